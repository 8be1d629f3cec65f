"""``laminar-polars run``: files replayed through a pipeline, checked against Polars.

Inputs come from the seeded demo feed, written as Parquet, CSV, Arrow IPC and
NDJSON; the outputs must equal what Polars computes in batch on the same rows
(late rows dropped by the source's rule). Bad arguments each give one line on
standard error naming the problem, and exit code 2.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import pathlib
import shlex
import shutil
import subprocess
import sys

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars import backtest, cli
from laminar_polars.cli import run as run_command
from laminar_polars.demo_feed import TradeFeed, reference_bars, symbol_names

REPO = pathlib.Path(lp.__file__).resolve().parents[1]

PIPELINE = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND);
CREATE MATERIALIZED VIEW bars AS
SELECT symbol, tumble(ts, INTERVAL '250' MILLISECOND) AS window_start,
       tumble_end(ts, INTERVAL '250' MILLISECOND) AS window_end,
       first_value(price) AS open, max(price) AS high, min(price) AS low,
       last_value(price) AS close, sum(qty) AS volume, count(*) AS trades
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '250' MILLISECOND);
CREATE MATERIALIZED VIEW big AS SELECT symbol, qty, ts FROM trades WHERE qty > 400;
CREATE SINK bar_sink FROM bars;
CREATE SINK big_sink FROM big;
"""

WRITE = {
    "parquet": pl.DataFrame.write_parquet,
    "csv": pl.DataFrame.write_csv,
    "arrow": pl.DataFrame.write_ipc,
    "ndjson": pl.DataFrame.write_ndjson,
}


def trades_frame(rows: int = 3000, *, late_fraction: float = 0.01, seed: int = 4,
                 jitter_ms: int = 50) -> pl.DataFrame:
    """The feed's rows in push order, with the ``late`` flag the source's rule gives."""
    feed = TradeFeed(symbol_names(3), seed=seed, rate=2000, late_fraction=late_fraction,
                     jitter=dt.timedelta(milliseconds=jitter_ms))
    return feed.take(rows).to_polars()


def write(frame: pl.DataFrame, path: pathlib.Path) -> pathlib.Path:
    WRITE[path.suffix.lstrip(".")](frame.select("symbol", "price", "qty", "ts"), path)
    return path


def read(path: pathlib.Path) -> pl.DataFrame:
    kind = path.suffix.lstrip(".")
    if kind == "csv":
        return pl.read_csv(path, try_parse_dates=True)
    if kind == "ndjson":
        frame = pl.read_ndjson(path)
        return frame.with_columns(pl.col(c).str.to_datetime(time_unit="us")
                                  for c, t in frame.schema.items() if t == pl.String and
                                  c.startswith(("window", "ts")))
    return pl.read_ipc(path) if kind == "arrow" else pl.read_parquet(path)


def expected_bars(trades: pl.DataFrame) -> pl.DataFrame:
    return reference_bars(trades, "250ms")


def expected_big(trades: pl.DataFrame) -> pl.DataFrame:
    return trades.filter(~pl.col("late") & (pl.col("qty") > 400)).select("symbol", "qty", "ts")


def assert_same_rows(got: pl.DataFrame, expected: pl.DataFrame, by: list[str]) -> None:
    got = got.select(expected.columns).sort(by, maintain_order=True)
    assert_frame_equal(got, expected.sort(by, maintain_order=True), check_dtypes=False)


@pytest.fixture
def pipeline(tmp_path: pathlib.Path) -> pathlib.Path:
    path = tmp_path / "pipeline.sql"
    path.write_text(PIPELINE)
    return path


def run(argv: list[str]) -> tuple[int, str, str]:
    """The command in this process: (exit code, standard output, standard error)."""
    out, err = io.StringIO(), io.StringIO()
    args = cli.build_parser().parse_args(["run", *argv])
    return run_command.run_pipeline(args, out, err), out.getvalue(), err.getvalue()


@pytest.mark.parametrize("kind", ["parquet", "csv", "arrow", "ndjson"])
def test_an_input_file_gives_what_polars_computes(tmp_path, pipeline, kind):
    trades = trades_frame()
    assert trades["late"].sum() > 0  # the run must drop them as the source does
    source = write(trades, tmp_path / f"trades.{kind}")
    bars, big = tmp_path / f"bars.{kind}", tmp_path / f"big.{kind}"
    code, out, err = run([str(pipeline), "--input", f"trades={source}", "--batch-rows", "500",
                          "--output", f"bar_sink={bars}", "--output", f"big_sink={big}"])
    assert (code, out, err) == (0, "", "")  # not a terminal: no progress unless asked
    assert_same_rows(read(bars), expected_bars(trades), ["window_start", "symbol"])
    assert_same_rows(read(big), expected_big(trades), ["ts", "symbol", "qty"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(  # no temporary file left
        ["pipeline.sql", source.name, bars.name, big.name])


def test_sinks_without_an_output_print_their_rows(tmp_path, pipeline):
    trades = trades_frame()
    source = write(trades, tmp_path / "trades.parquet")
    code, out, err = run([str(pipeline), "--input", f"trades={source}",
                          "--output", f"bar_sink={tmp_path / 'bars.parquet'}"])
    assert code == 0 and err == ""
    assert out.startswith("big_sink,symbol,qty,ts\n")
    printed = pl.read_csv(io.StringIO(out), try_parse_dates=True)
    assert set(printed["big_sink"]) == {"big_sink"}
    assert_same_rows(printed, expected_big(trades), ["ts", "symbol", "qty"])


def printed_sink(out: str, name: str) -> pl.DataFrame:
    """One sink's rows out of the printed lines (its own lines start with its name)."""
    lines = [line for line in out.splitlines() if line.startswith(name + ",")]
    return pl.read_csv(io.StringIO("\n".join(lines)), try_parse_dates=True).drop(name)


def test_an_output_may_name_a_view(tmp_path, pipeline):
    trades = trades_frame()
    source = write(trades, tmp_path / "trades.parquet")
    code, out, _ = run([str(pipeline), "--input", f"trades={source}",
                        "--output", f"bars={tmp_path / 'bars.csv'}", "--quiet"])
    assert code == 0
    assert_same_rows(read(tmp_path / "bars.csv"), expected_bars(trades), ["window_start", "symbol"])
    # both sinks of the pipeline still print, each its own lines
    assert_same_rows(printed_sink(out, "bar_sink"), expected_bars(trades),
                     ["window_start", "symbol"])
    assert_same_rows(printed_sink(out, "big_sink"), expected_big(trades), ["ts", "symbol", "qty"])


def test_two_files_into_one_source_are_merged_by_event_time(tmp_path, pipeline):
    # In event-time order, no jitter, nothing late: pushed file after file, the
    # second file's rows would all be late. Merged by event time, none is.
    trades = trades_frame(4000, late_fraction=0.0, jitter_ms=0)
    assert trades["ts"].is_sorted()
    even = write(trades.gather_every(2), tmp_path / "even.parquet")
    odd = write(trades.gather_every(2, offset=1), tmp_path / "odd.csv")
    bars = tmp_path / "bars.parquet"
    code, _, err = run([str(pipeline), "--input", f"trades={even}", "--input", f"trades={odd}",
                        "--batch-rows", "300", "--output", f"bar_sink={bars}", "--quiet"])
    assert (code, err) == (0, "")
    assert_same_rows(read(bars), expected_bars(trades), ["window_start", "symbol"])


def test_each_file_keeps_its_order_so_its_late_rows_stay_late(tmp_path, pipeline):
    trades = trades_frame(4000, late_fraction=0.02)
    first, second = trades.filter(pl.col("symbol") != "NVDA"), trades.filter(
        pl.col("symbol") == "NVDA")
    db = lp.open()
    db.execute(PIPELINE)
    rows = backtest.replay(db, [("trades", write(first, tmp_path / "a.parquet")),
                                ("trades", write(second, tmp_path / "b.parquet"))],
                           batch_rows=250)
    db.stop()
    assert rows == trades.height
    # Each file's late rows (by its own order) are dropped; the merge cannot
    # make a row of one file late through the other, whose key never passes it.
    late = db.metrics()["sources"]["trades"]["late"]
    assert late == int(trades["late"].sum())


def test_two_sources_advance_together(tmp_path):
    """Quotes and trades cover the same hour; a tick after every push sees
    both watermarks within one batch of each other, never one file ahead."""
    db = lp.open()
    db.execute("""
        CREATE SOURCE trades (symbol VARCHAR, qty BIGINT, ts TIMESTAMP NOT NULL,
                              WATERMARK FOR ts AS ts);
        CREATE SOURCE quotes (symbol VARCHAR, bid DOUBLE, ts TIMESTAMP NOT NULL,
                              WATERMARK FOR ts AS ts)""")
    start = dt.datetime(2024, 1, 2, 9)
    times = pl.datetime_range(start, start + dt.timedelta(hours=1), "1s", eager=True)
    pl.DataFrame({"symbol": "A", "qty": 1, "ts": times}).write_parquet(tmp_path / "t.parquet")
    pl.DataFrame({"symbol": "A", "bid": 1.0, "ts": times.gather_every(3)}).write_csv(
        tmp_path / "q.csv")
    gaps = []

    def tick() -> None:
        stats = db.metrics()["sources"]
        low = min(stats["trades"]["watermark"], stats["quotes"]["watermark"])
        if low != dt.datetime.min:
            gaps.append(abs(stats["trades"]["watermark"] - stats["quotes"]["watermark"]))

    rows = backtest.replay(db, {"trades": tmp_path / "t.parquet", "quotes": tmp_path / "q.csv"},
                           batch_rows=100, tick=tick, close=False)
    assert rows == len(times) + len(times.gather_every(3))
    assert len(gaps) > 10
    # a batch is 100 s of trades or 300 s of quotes: the sources never drift further
    assert max(gaps) <= dt.timedelta(seconds=300)
    db.stop()


class FakeClock:
    """The clock of a paced replay: sleeping moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_speed_paces_event_time_against_the_clock(tmp_path, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(backtest, "_monotonic", clock.monotonic)  # pacing's clock only
    monkeypatch.setattr(backtest, "_sleep", clock.sleep)
    trades = trades_frame(2000, late_fraction=0.0)  # 1 s of event time at 2000 rows/s
    db = lp.open()
    db.execute(PIPELINE)
    sub = db.sink("bar_sink").subscribe()
    source = write(trades, tmp_path / "trades.parquet")
    pushed: list[tuple[float, int]] = []
    replay = backtest.Replay(db, {"trades": source}, speed=4.0)
    replay.run(tick=lambda: pushed.append((clock.now, replay.rows)))
    db.stop()
    micros = trades["ts"].dt.epoch("us")
    first = micros[0]
    for now, rows in pushed:  # never a row whose time has not come
        if rows:
            reached = micros[:rows].max()
            assert reached - first <= (now - 1000.0) * 4.0 * 1e6 + 1
    span = (micros.max() - first) / 1e6
    assert span / 4.0 - 1e-6 <= clock.now - 1000.0 <= span / 4.0 + 0.1  # a quarter of it
    assert_same_rows(pl.concat(list(sub)), expected_bars(trades), ["window_start", "symbol"])


def test_progress_on_request(tmp_path, pipeline):
    source = write(trades_frame(), tmp_path / "trades.parquet")
    code, _, err = run([str(pipeline), "--input", f"trades={source}", "--progress"])
    assert code == 0
    assert err.splitlines()[-1].startswith("# done: 3,000 rows in ")
    assert "late rows dropped" in err
    code, _, err = run([str(pipeline), "--input", f"trades={source}", "--quiet"])
    assert (code, err) == (0, "")


def test_data_dir_is_passed_to_the_database(tmp_path, pipeline):
    source = write(trades_frame(200), tmp_path / "trades.parquet")
    code, _, err = run([str(pipeline), "--input", f"trades={source}", "--quiet",
                        "--data-dir", str(tmp_path / "state")])
    assert code == 0
    assert any((tmp_path / "state").iterdir())  # the database's durable state
    for line in err.splitlines():  # what the database warns about, one line each
        assert line.startswith("laminar-polars run: warning: ")


def test_a_later_run_over_the_same_data_dir_goes_on_from_the_state_left(tmp_path, pipeline):
    """Day two after day one: with --data-dir the first run's end of input is
    not for good; its open windows went to its outputs, and the next run
    emits them again, complete (keep the last of each), then goes on."""
    trades = trades_frame()
    state = str(tmp_path / "state")
    outputs = []
    for day, rows in enumerate((trades[:1500], trades[1500:])):
        source = write(rows, tmp_path / f"day{day}.parquet")
        bars, big = tmp_path / f"bars{day}.parquet", tmp_path / f"big{day}.parquet"
        code, _, err = run([str(pipeline), "--input", f"trades={source}", "--data-dir", state,
                            "--output", f"bar_sink={bars}", "--output", f"big_sink={big}"])
        assert (code, err) == (0, "")
        outputs.append((pl.read_parquet(bars), pl.read_parquet(big)))
    bars = pl.concat([b for b, _ in outputs]).unique(["symbol", "window_start"], keep="last",
                                                     maintain_order=True)
    assert_same_rows(bars, expected_bars(trades), ["window_start", "symbol"])
    big = pl.concat([b for _, b in outputs])
    assert_same_rows(big, expected_big(trades), ["ts", "symbol", "qty"])


def bad_arguments(tmp: pathlib.Path) -> list[tuple[list[str], str]]:
    """Command lines that must fail with exit code 2, and what the message names."""
    good = str(write(trades_frame(100), tmp / "trades.parquet"))
    (tmp / "trades.txt").write_text("x")
    (tmp / "short.csv").write_text("symbol,price,ts\nA,1.0,2024-01-02 09:30:00\n")
    (tmp / "bad_time.csv").write_text("symbol,price,qty,ts\nA,1.0,1,yesterday\n")
    (tmp / "null_time.csv").write_text("symbol,price,qty,ts\nA,1.0,1,\n")
    (tmp / "broken.parquet").write_text("not parquet")
    (tmp / "a_file").write_text("")
    (tmp / "bad.sql").write_text("CREATE SOURCE t (x BIGINT); SELEC 1")
    (tmp / "no_watermark.sql").write_text("CREATE SOURCE trades (symbol VARCHAR, price DOUBLE,"
                                          " qty BIGINT, ts TIMESTAMP)")
    pipeline = str(tmp / "pipeline.sql")
    return [
        ([str(tmp / "missing.sql"), "--input", f"trades={good}"], "missing.sql"),
        ([str(tmp / "bad.sql"), "--input", f"trades={good}"], "SELEC"),
        ([pipeline], "--input"),
        ([pipeline, "--input", good], "SOURCE=PATH"),
        ([pipeline, "--input", f"quotes={good}"], "unknown source 'quotes'"),
        ([pipeline, "--input", f"trades={tmp / 'nope.parquet'}"], "no such file"),
        ([pipeline, "--input", f"trades={tmp / 'trades.txt'}"], "'.txt'"),
        ([pipeline, "--input", f"trades={tmp / 'broken.parquet'}"], "cannot read parquet"),
        ([pipeline, "--input", f"trades={tmp / 'short.csv'}"], "no column 'qty'"),
        ([pipeline, "--input", f"trades={tmp / 'bad_time.csv'}"], "parse dates"),
        ([pipeline, "--input", f"trades={tmp / 'null_time.csv'}"], "NOT NULL"),
        ([str(tmp / "no_watermark.sql"), "--input", f"trades={good}", "--input",
          f"trades={good}"], "no WATERMARK"),
        ([str(tmp / "no_watermark.sql"), "--input", f"trades={good}", "--speed", "2"],
         "no WATERMARK"),
        ([pipeline, "--input", f"trades={good}", "--output", "bar_sink"], "SINK=PATH"),
        ([pipeline, "--input", f"trades={good}", "--output", f"nope={tmp / 'o.csv'}"],
         "unknown sink 'nope'"),
        ([pipeline, "--input", f"trades={good}", "--output", f"bar_sink={tmp / 'o.xlsx'}"],
         "'.xlsx'"),
        ([pipeline, "--input", f"trades={good}", "--output", f"bar_sink={tmp / 'no/o.csv'}"],
         "does not exist"),
        ([pipeline, "--input", f"trades={good}", "--output", f"bar_sink={tmp / 'a.csv'}",
          "--output", f"bar_sink={tmp / 'b.csv'}"], "twice"),
        ([pipeline, "--input", f"trades={good}", "--speed", "-1"], "--speed"),
        ([pipeline, "--input", f"trades={good}", "--speed", "fast"], "--speed"),
        ([pipeline, "--input", f"trades={good}", "--batch-rows", "0"], "--batch-rows"),
        ([pipeline, "--input", f"trades={good}", "--data-dir", str(tmp / "a_file" / "x")],
         "a_file"),
    ]


def test_bad_arguments_exit_2_with_one_line_naming_the_problem(tmp_path, pipeline, capsys):
    for argv, named in bad_arguments(tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            sys.exit(cli.main(["run", *argv]))
        captured = capsys.readouterr()
        assert exit_info.value.code == 2, (argv, captured.err)
        assert captured.out == "", argv
        lines = captured.err.splitlines()
        assert len(lines) == 1 and named in lines[0], (argv, captured.err)
        assert lines[0].startswith("laminar-polars run: error: "), lines
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert leftovers == []


def test_the_installed_command_exits_2_on_one_line(tmp_path, pipeline):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run(
        [sys.executable, "-m", "laminar_polars", "run", str(pipeline), "--input",
         f"quotes={tmp_path / 'q.parquet'}"], capture_output=True, text=True, env=env,
        timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "laminar-polars run: error: --input quotes=" + str(tmp_path / "q.parquet") +
        ": unknown source 'quotes' (known: trades)"]


def test_a_failed_engine_exits_1_and_writes_no_output(tmp_path):
    pipeline = tmp_path / "p.sql"
    pipeline.write_text("""
        CREATE SOURCE s (x VARCHAR, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts);
        CREATE MATERIALIZED VIEW v AS SELECT CAST(x AS BIGINT) AS n FROM s""")
    pl.DataFrame({"x": ["1", "two"], "ts": [dt.datetime(2024, 1, 1)] * 2}).write_parquet(
        tmp_path / "s.parquet")
    code, _, err = run([str(pipeline), "--input", f"s={tmp_path / 's.parquet'}",
                        "--output", f"v={tmp_path / 'v.parquet'}"])
    assert code == 1
    assert len(err.splitlines()) == 1 and "engine" in err
    assert not (tmp_path / "v.parquet").exists()


def with_late_flags(trades: pl.DataFrame, delay_us: int) -> pl.DataFrame:
    """The rows in push order with ``arrival`` and the source's ``late`` rule applied."""
    micros = pl.col("ts").dt.epoch("us")
    return trades.with_row_index("arrival").with_columns(
        late=(micros < micros.cum_max().shift(1) - delay_us).fill_null(False))


def test_the_readme_backtest_runs(tmp_path):
    readme = (REPO / "README.md").read_text()
    block = readme.split("Replay a file through the same pipeline")[1]
    commands = block.split("```bash\n")[1].split("```")[0].strip().splitlines()
    assert [c.split()[0] for c in commands] == ["python", "laminar-polars"]
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for command in commands:
        argv = shlex.split(command)
        argv[:1] = [sys.executable] if argv[0] == "python" else [sys.executable, "-m",
                                                                  "laminar_polars"]
        result = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1].startswith("# done: 2,000,000 rows in ")
    trades = with_late_flags(pl.read_parquet(tmp_path / "trades.parquet"), 100_000)
    assert_same_rows(pl.read_parquet(tmp_path / "bars.parquet"),
                     reference_bars(trades, "1s"), ["window_start", "symbol"])


def test_examples_ohlc_sql_is_the_demo_pipeline():
    """README says the demo runs examples/ohlc.sql (with the demo's defaults)."""
    from laminar_polars.cli import demo

    ours, the_demo = lp.open(), lp.open()
    ours.execute((REPO / "examples" / "ohlc.sql").read_text())
    the_demo.execute(demo.SOURCE_DDL.format(delay_ms=100) + ";" + demo.VIEW_SQL.format(
        interval=demo.sql_interval(dt.timedelta(seconds=1))))
    for name in ("trades", "ohlc"):
        assert ours.describe(name).equals(the_demo.describe(name))
    assert ours.catalog.views["ohlc"].sql == the_demo.catalog.views["ohlc"].sql
