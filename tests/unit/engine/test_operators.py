"""The engine's operators against Polars in batch, on hand-built plans.

The front ends have their own tests; these pin the engine alone: rows pushed
out of order (with late ones) while the engine runs, every window kind, the
aggregates whose merge is subtle (first/last by event time with ties,
distinct counts, sums of nulls), and views stacked on views.
"""

from __future__ import annotations

import datetime as dt
import random
import time

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    KeyedAgg,
    RowMap,
    Step,
    WindowAgg,
    WindowSpec,
)
from tests.conftest import TRADES_DDL, read_all

DELAY = 100_000  # the source's watermark delay, microseconds
AGGS = (
    Agg("open", "first", pl.col("price")),
    Agg("high", "max", pl.col("price")),
    Agg("close", "last", pl.col("price")),
    Agg("volume", "sum", pl.col("qty")),
    Agg("trades", "count_star"),
    Agg("priced", "count", pl.col("price")),
    Agg("mean", "mean", pl.col("qty")),
    Agg("sizes", "n_unique", pl.col("qty")),
)
OUT = (pl.col("symbol"), pl.col(WINDOW_START).alias("ws"), pl.col(WINDOW_END).alias("we"),
       *[pl.col(a.name) for a in AGGS])


def _trades(n: int, seed: int, spread: int) -> list[tuple]:
    """Rows 1 ms apart, up to ``spread`` us out of order, with null prices, tied times."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        ts = i * 1000 + rng.randint(0, spread)
        if rng.random() < 0.1 and rows:
            ts = rows[-1][3]  # an exact tie in event time
        price = None if rng.random() < 0.1 else round(rng.random() * 100, 3)
        qty = None if rng.random() < 0.05 else rng.randint(0, 6)
        rows.append((rng.choice("ABC"), price, qty, ts))
    return rows


def _accepted(rows: list[tuple]) -> pl.DataFrame:
    """The rows that were not late, in arrival order, with their arrival index."""
    kept, high = [], None
    for row in rows:
        if high is None or row[3] >= high - DELAY:
            kept.append(row)
        high = row[3] if high is None else max(high, row[3])
    schema = {"symbol": pl.String, "price": pl.Float64, "qty": pl.Int64, "ts": pl.Int64}
    return pl.DataFrame(kept, schema=schema, orient="row").with_row_index("arrival")


def _oracle(windowed: pl.DataFrame, end: pl.Expr) -> pl.DataFrame:
    ordered = windowed.sort("symbol", "ws", "ts", "arrival")
    qty = pl.col("qty")
    out = ordered.group_by("symbol", "ws", maintain_order=True).agg(
        end.alias("we"),
        pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
        pl.col("price").last().alias("close"),
        pl.when(qty.count() > 0).then(qty.sum()).alias("volume"),
        pl.len().alias("trades"), pl.col("price").count().alias("priced"),
        qty.mean().alias("mean"), qty.drop_nulls().n_unique().alias("sizes"),
    )
    return out.with_columns(
        pl.col("ws", "we").cast(pl.Datetime("us")),
        pl.col("trades", "priced", "sizes").cast(pl.UInt32),
    ).sort("symbol", "ws")


def _settle(db: lp.LaminarDB, view: str, pushed: int) -> None:
    """Wait until the engine has taken every row pushed so far into ``view``."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        metrics = db.metrics()
        if metrics["views"][view]["rows_in"] + metrics["sources"]["trades"]["late"] == pushed:
            return
        time.sleep(0.001)
    raise AssertionError("the engine did not take the rows pushed")


def _run(spec: WindowSpec, rows: list[tuple], emit: str = "on_window_close") -> pl.DataFrame:
    with lp.open() as db:
        db.execute(TRADES_DDL)
        plan = WindowAgg(db.runtime.relation("trades"), ("symbol",), spec, AGGS, OUT, emit=emit)
        db.create_materialized_view("v", plan)
        sub = db.sink("v").subscribe()
        db.start()
        source = db.source("trades")
        for start in range(0, len(rows), 137):  # batch boundaries fall anywhere
            source.push_batch(rows[start:start + 137])
            if start % 3:
                _settle(db, "v", min(start + 137, len(rows)))
        db.stop()
        assert db.metrics()["sources"]["trades"]["late"] == len(rows) - _accepted(rows).height
        return read_all(sub)


@pytest.mark.parametrize("seed", [1, 2])
def test_tumbling_windows_equal_batch(seed):
    rows = _trades(3000, seed, spread=150_000)  # beyond the delay: some rows are late
    got = _run(WindowSpec("tumble", 250_000), rows).sort("symbol", "ws")
    accepted = _accepted(rows).with_columns(ws=pl.col("ts") // 250_000 * 250_000)
    assert_frame_equal(got, _oracle(accepted, pl.col("ws").first() + 250_000))


def test_hopping_windows_equal_batch():
    rows = _trades(2000, 3, spread=120_000)
    got = _run(WindowSpec("hop", 300_000, slide_us=100_000), rows).sort("symbol", "ws")
    accepted = _accepted(rows)
    exploded = pl.concat([
        accepted.with_columns(ws=pl.col("ts") // 100_000 * 100_000 - j * 100_000)
        for j in range(3)
    ])
    assert_frame_equal(got, _oracle(exploded, pl.col("ws").first() + 300_000))


def test_session_windows_equal_batch():
    rows = [r for i, r in enumerate(_trades(3000, 4, spread=90_000)) if (i // 200) % 3]
    got = _run(WindowSpec("session", 20_000), rows).sort("symbol", "ws")
    accepted = _accepted(rows).sort("symbol", "ts", "arrival")
    new_session = (pl.col("ts").diff().over("symbol") >= 20_000).fill_null(True)
    sessions = accepted.with_columns(session=new_session.cum_sum().over("symbol"))
    sessions = sessions.with_columns(ws=pl.col("ts").min().over("symbol", "session"))
    assert_frame_equal(got, _oracle(sessions, pl.col("ts").max() + 20_000))


def test_updates_end_at_the_batch_answer():
    rows = _trades(1500, 5, spread=80_000)
    got = _run(WindowSpec("tumble", 200_000), rows, emit="on_update")
    last = got.group_by("symbol", "ws", maintain_order=True).last().sort("symbol", "ws")
    accepted = _accepted(rows).with_columns(ws=pl.col("ts") // 200_000 * 200_000)
    assert_frame_equal(last, _oracle(accepted, pl.col("ws").first() + 200_000))
    assert got.height > last.height  # windows really were updated more than once


def test_continuous_aggregate_upserts_and_a_view_stacked_on_windows():
    rows = _trades(2000, 6, spread=50_000)
    with lp.open() as db:
        db.execute(TRADES_DDL)
        trades = db.runtime.relation("trades")
        keyed = KeyedAgg(trades, ("symbol",), AGGS, (pl.col("symbol"), *[pl.col(a.name)
                                                                          for a in AGGS]))
        db.create_materialized_view("totals", keyed)
        bars = WindowAgg(trades, ("symbol",), WindowSpec("tumble", 100_000), AGGS, OUT,
                         time_output="we", time_output_is="end")
        db.create_materialized_view("bars", bars)
        busy = RowMap(db.runtime.relation("bars"), (Step("filter", (pl.col("trades") >= 30,)),))
        db.create_materialized_view("busy", busy)
        upserts = db.create_sink("changes", "totals", changelog=True).subscribe()
        stacked = db.sink("busy").subscribe()
        db.start()
        source = db.source("trades")
        for i, row in enumerate(rows):
            source.push(row)
            if i % 400 == 399:
                _settle(db, "totals", i + 1)
        db.stop()
        changes = read_all(upserts)
        accepted = _accepted(rows)
        final = changes.group_by("symbol", maintain_order=True).last().sort("symbol")
        expected = _oracle(accepted.with_columns(ws=pl.lit(0)), pl.lit(0)).drop("ws", "we")
        assert_frame_equal(final.drop("op"), expected)
        assert changes.group_by("symbol").agg(pl.col("op").first())["op"].to_list() == \
            ["insert"] * 3
        assert set(changes["op"]) == {"insert", "update"}
        assert_frame_equal(db.query("SELECT * FROM totals ORDER BY symbol"), expected)
        windows = _oracle(accepted.with_columns(ws=pl.col("ts") // 100_000 * 100_000),
                          pl.col("ws").first() + 100_000)
        assert_frame_equal(read_all(stacked).sort("symbol", "ws"),
                           windows.filter(pl.col("trades") >= 30))


def test_a_close_whose_rows_were_merged_runs_no_polars_query(monkeypatch):
    """The emitting path: rows of the closing window merged just before the close
    (half the watermark lag ahead of it), so the close slices ready rows and runs
    no Polars query; the rows are still exact."""
    from laminar_polars.engine.operator import Delta
    from laminar_polars.engine.ops.grid import GridWindows

    with lp.open() as db:
        db.execute(TRADES_DDL)
        aggs = (Agg("high", "max", pl.col("price")), Agg("trades", "count_star"))
        out = (pl.col("symbol"), pl.col(WINDOW_END).alias("we"), pl.col("high"), pl.col("trades"))
        spec = WindowSpec("tumble", 1_000_000, 1_000_000)
        node = WindowAgg(db.runtime.relation("trades"), ("symbol",), spec, aggs, out)
    windows = GridWindows(node)

    def emit(rows: list[tuple]) -> pl.DataFrame | None:
        """What the graph does on the way to the readers: the batch, then its watermark."""
        frame = pl.DataFrame(rows, schema=["symbol", "price", "qty", "ts"], orient="row")
        frame = frame.with_columns(pl.col("ts").cast(pl.Datetime("us")))
        assert windows.on_batch(0, Delta(frame)) is None
        released = windows.on_watermark(max(r[3] for r in rows) - DELAY)
        return None if released is None else released.rows

    assert emit([("A", 1.0, 1, 10), ("B", 5.0, 1, 500_000), ("A", 3.0, 1, 999_999)]) is None
    windows.settle()
    assert emit([("A", 2.0, 1, 1_060_000)]) is None
    windows.settle()  # merged here, after the rows went out: half the lag before the close

    queries = []
    monkeypatch.setattr(pl.LazyFrame, "collect",
                        lambda self, *a, **k: queries.append(self) or pytest.fail("a query ran"))
    monkeypatch.setattr(pl, "collect_all", lambda *a, **k: pytest.fail("a query ran"))
    emitted = emit([("B", 9.0, 1, 1_120_000)])
    assert queries == []
    monkeypatch.undo()
    windows.settle()
    assert emitted is not None
    assert emitted.sort("symbol").to_dicts() == [
        {"symbol": "A", "we": dt.datetime(1970, 1, 1, 0, 0, 1), "high": 3.0, "trades": 2},
        {"symbol": "B", "we": dt.datetime(1970, 1, 1, 0, 0, 1), "high": 5.0, "trades": 1},
    ]


def test_metrics_tell_pending_rows_from_merged_state(monkeypatch):
    """pending_rows: input rows held before a merge; state_rows: merged partials,
    one per key and open window. A close frees both for the windows it emitted."""
    from laminar_polars.engine.ops import grid

    monkeypatch.setattr(grid, "ABSORB_ROWS", 1_000)
    monkeypatch.setattr(grid, "PENDING_CAP", 1_000)
    with lp.open() as db:
        db.execute(TRADES_DDL)
        spec = WindowSpec("tumble", 1_000_000, 1_000_000)
        aggs = (Agg("trades", "count_star"),)
        out = (pl.col("symbol"), pl.col(WINDOW_START).alias("ws"), pl.col("trades"))
        db.create_materialized_view(
            "v", WindowAgg(db.runtime.relation("trades"), ("symbol",), spec, aggs, out))
        db.start()
        source = db.source("trades")
        source.push_batch([(s, 1.0, 1, i) for i, s in enumerate("ABABA")])
        _settle(db, "v", 5)
        view = db.metrics()["views"]["v"]
        assert (view["pending_rows"], view["state_rows"]) == (5, 0)
        source.push_batch([(s, 1.0, 1, 10_000 + i) for i, s in enumerate("AB" * 500)])
        _settle(db, "v", 1_005)
        view = db.metrics()["views"]["v"]
        assert (view["pending_rows"], view["state_rows"]) == (0, 2)  # A and B, window 0
        source.push(("C", 1.0, 1, 5_000_000))  # closes window 0
        _settle(db, "v", 1_006)
        view = db.metrics()["views"]["v"]
        assert view["state_rows"] == 0 and view["pending_rows"] <= 1
