"""The ``laminar-polars`` command: ``--help`` and the OHLC demo.

The demo's feed is deterministic by seed, so each test regenerates the rows it
pushed, computes the same bars with Polars in batch (late rows dropped), and
checks the demo's bars (returned and printed) against them.
"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from laminar_polars import cli
from laminar_polars.demo_feed import TradeFeed, Trades, reference_bars, symbol_names

BAR_LINE = re.compile(
    r"^(\d\d:\d\d:\d\d\.\d{3})-(\d\d:\d\d:\d\d)\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+"
    r"([\d.]+)\s+([\d,]+)\s+([\d,]+)$"
)


def run(argv: list[str]) -> cli.DemoResult:
    args = cli.build_parser().parse_args(["demo", *argv])
    return cli.run_demo(args, out=io.StringIO())


def expected_bars(trades: Trades, every: str) -> pl.DataFrame:
    return reference_bars(trades.to_polars(), every)


def assert_bars_equal(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    got = got.select(expected.columns).sort("window_start", "symbol")
    assert_frame_equal(got, expected, check_dtypes=False)


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["demo", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--rows", "--duration", "--symbols", "--batch", "--bar", "--quiet"):
        assert option in help_text
    assert cli.main([]) == 0  # no command: the help, exit 0
    assert "usage: laminar-polars" in capsys.readouterr().out


def test_python_dash_m_help():
    out = subprocess.run([sys.executable, "-m", "laminar_polars", "--help"],
                         capture_output=True, text=True, check=True, timeout=60)
    assert "demo" in out.stdout


def test_feed_is_deterministic_and_marks_late_rows():
    names = symbol_names(3)
    whole = TradeFeed(names, seed=7, late_fraction=0.01).take(5000)
    feed = TradeFeed(names, seed=7, late_fraction=0.01)
    pieces = Trades.concat([feed.take(1), feed.take(4095), feed.take(904)], names)
    for column in ("code", "price", "qty", "ts", "late"):
        assert np.array_equal(getattr(whole, column), getattr(pieces, column))
    # late = older than max(every earlier row) - 100 ms, the source's rule
    prior = np.maximum.accumulate(whole.ts)[:-1]
    assert np.array_equal(whole.late[1:], whole.ts[1:] < prior - 100_000)
    assert 0 < whole.late.sum() < 100


@pytest.mark.parametrize("mode", [[], ["--batch", "256"]], ids=["push", "push_arrow"])
def test_demo_bars_equal_polars_batch(mode):
    result = run(["--rows", "2000", "--speed", "0", "--symbols", "3", "--bar", "250ms",
                  "--late-fraction", "0.01", "--quiet", *mode])
    # the rows pushed are the seeded feed's first 2000
    again = TradeFeed(symbol_names(3), seed=0, late_fraction=0.01).take(2000)
    assert np.array_equal(result.trades.ts, again.ts)
    assert np.array_equal(result.trades.price, again.price)
    source = result.metrics["sources"]["trades"]
    assert source["late"] == int(again.late.sum()) > 0
    assert_bars_equal(result.bars, expected_bars(again, "250ms"))


def test_demo_lazyframe_view_equals_polars_batch():
    result = run(["--rows", "1500", "--speed", "0", "--symbols", "2", "--bar", "500ms",
                  "--lazy", "--quiet"])
    assert_bars_equal(result.bars, expected_bars(result.trades, "500ms"))


def test_main_prints_every_bar_and_exits_0(capsys):
    code = cli.main(["demo", "--rows", "2000", "--speed", "0", "--symbols", "AAPL,MSFT",
                     "--bar", "500ms", "--seed", "3"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    printed = [m.groups() for m in map(BAR_LINE.match, lines) if m]
    expected = expected_bars(TradeFeed(["AAPL", "MSFT"], seed=3).take(2000), "500ms")
    want = [(f"{r['window_start']:%H:%M:%S.%f}"[:-3], f"{r['window_end']:%H:%M:%S}", r["symbol"],
             f"{r['open']:.2f}", f"{r['high']:.2f}", f"{r['low']:.2f}", f"{r['close']:.2f}",
             f"{r['volume']:,}", f"{r['trades']:,}")
            for r in expected.iter_rows(named=True)]
    assert sorted(printed) == sorted(want)
    assert lines[-1].startswith("# done: 2,000 rows")


def test_quiet_prints_the_summary_only(capsys):
    assert cli.main(["demo", "--rows", "2000", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("# done: 2,000 rows")


def test_duration_ends_the_demo(capsys):
    assert cli.main(["demo", "--duration", "0.3", "--quiet", "--batch"]) == 0
    assert capsys.readouterr().out.startswith("# done: ")


def test_bad_options_fail_cleanly(capsys):
    assert cli.main(["demo", "--bar", "soon", "--rows", "10"]) == 1
    assert "--bar" in capsys.readouterr().err
