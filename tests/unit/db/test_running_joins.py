"""Joins in a running database: their metrics (per side rows, state, frees and
late rows; matches), state held by the watermark window only, lookup joins
meeting a replaced table, a state TTL, and a late row at a join's port."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

import laminar_polars as lp
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.ops.interval import IntervalJoinOperator
from laminar_polars.plan import IntervalJoin, Scan

T0 = dt.datetime(2024, 1, 1)
SOURCES = """
CREATE SOURCE trades (sym VARCHAR NOT NULL, px DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
CREATE SOURCE quotes (sym VARCHAR NOT NULL, bid DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)"""
ASOF = """CREATE MATERIALIZED VIEW asof AS SELECT t.sym, t.px, q.bid FROM trades t
          ASOF JOIN quotes q ON t.sym = q.sym AND t.ts >= q.ts"""


def sec(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _wait_for(db: lp.LaminarDB, view: str, rows_in: int) -> None:
    """Until ``view`` took ``rows_in`` rows and settled (no timing asserted:
    the deadline only stops a hang)."""
    deadline = time.monotonic() + 10
    while db.metrics()["views"][view]["rows_in"] < rows_in:
        assert time.monotonic() < deadline, f"{view} never took {rows_in} rows"
        time.sleep(0.001)
    db.runtime.scheduler.at_barrier(lambda: None)


def _rows(sub: lp.Subscription) -> pl.DataFrame:
    frames = []
    while True:
        try:
            frames.append(sub.recv(timeout=10))
        except lp.Closed:
            return pl.concat(frames) if frames else pl.DataFrame()


@pytest.mark.parametrize("workers", [1, 2])
def test_asof_metrics_and_state_bounded_by_the_watermarks(workers):
    db = lp.open(lp.Config(workers=workers))
    db.execute(SOURCES)
    db.execute(ASOF)
    quotes, trades = db.source("quotes"), db.source("trades")
    for i in range(100):  # 2 symbols, a quote every 0.1 s for 10 s
        quotes.push(("A" if i % 2 else "B", float(i), sec(i / 10)))
    quotes.push(("A", -1.0, sec(0)))  # late: quotes' watermark is at 8.9 s
    trades.push_batch([("A", 1.0, sec(2.05)), ("B", 2.0, sec(9.5)), ("C", 3.0, sec(9.6))])
    db.start()
    db.stop()
    join = db.metrics()["views"]["asof"]["join"]
    assert join["kind"] == "asof"
    # the trades came first (one micro-batch per source): all waited for the quotes
    assert join["left"] == {"inputs": ["trades"], "rows_in": 3, "state_rows": 0, "freed": 3,
                            "late": 0}
    # every right row went in; once both inputs closed, one per key is left
    assert join["right"]["rows_in"] == 100 and join["right"]["late"] == 1
    assert join["right"]["state_rows"] == 2 and join["right"]["freed"] == 98
    assert (join["matches"], join["unmatched"]) == (2, 0)  # C has no quote: dropped
    assert db.metrics()["views"]["asof"]["joins"] == [join]


def test_asof_frees_right_rows_while_running():
    db = lp.open()
    db.execute(SOURCES)
    db.execute(ASOF)
    sub = db.sink("asof").subscribe()
    quotes, trades = db.source("quotes"), db.source("trades")
    for i in range(200):
        quotes.push(("A", float(i), sec(i / 10)))
    trades.push(("A", 0.5, sec(15.0)))  # trades' watermark: 14.1 s
    trades.push(("A", 0.5, sec(15.1)))
    db.start()
    _wait_for(db, "asof", 202)  # the batch settled: what it freed is gone
    state = db.metrics()["views"]["asof"]["join"]["right"]["state_rows"]
    # the quotes from the trades' watermark on, and the last one before it
    assert state == 200 - 141 + 1
    db.stop()
    assert _rows(sub)["bid"].to_list() == [150.0, 151.0]


def test_lookup_meets_the_table_as_it_is_and_keeps_it_read():
    db = lp.open()
    db.execute(SOURCES)
    db.register_table("names", pl.DataFrame({"sym": ["A"], "name": ["Apple"]}))
    db.execute("CREATE MATERIALIZED VIEW named AS SELECT t.sym, n.name FROM trades t "
               "LEFT JOIN names n ON t.sym = n.sym")
    sub = db.sink("named").subscribe()
    db.start()
    trades = db.source("trades")
    trades.push(("A", 1.0, sec(0)))
    _wait_for(db, "named", 1)
    db.register_table("names", pl.DataFrame({"sym": ["A"], "name": ["Alpha"]}), replace=True)
    trades.push(("A", 1.0, sec(1)))
    with pytest.raises(lp.SchemaError, match="joined by \\['named'\\]"):
        db.register_table("names", pl.DataFrame({"sym": ["A"]}), replace=True)
    with pytest.raises(lp.CatalogError, match="still read by \\['named'\\]"):
        db.execute("DROP TABLE names")
    db.stop()
    assert _rows(sub)["name"].to_list() == ["Apple", "Alpha"]
    db.drop_sink("named")
    db.drop_materialized_view("named")
    db.execute("DROP TABLE names")


@pytest.mark.parametrize("ttl", [None, "1 second"])
def test_state_ttl_frees_old_rows_of_an_unbounded_join(ttl):
    db = lp.open()
    db.execute(SOURCES)
    with_ttl = f" WITH (state_ttl = '{ttl}')" if ttl else ""
    db.execute(f"CREATE MATERIALIZED VIEW pairs{with_ttl} AS SELECT t.px, q.bid "
               "FROM trades t JOIN quotes q ON t.sym = q.sym")
    sub = db.sink("pairs").subscribe()
    db.start()
    db.source("trades").push_batch([("A", 1.0, sec(0)), ("Z", 0.0, sec(6))])  # left wm: 5 s
    db.source("quotes").push(("Z", 0.0, sec(3)))  # right wm: 2 s, so the join's is 2 s
    _wait_for(db, "pairs", 3)
    db.source("quotes").push(("A", 9.0, sec(2.5)))  # on time for quotes
    db.stop()
    join = db.metrics()["views"]["pairs"]["join"]
    if ttl:  # the trade at 0 s was freed once the join's watermark passed 1 s
        assert _rows(sub).height == 1 and join["left"]["freed"] == 2
    else:
        assert sorted(_rows(sub)["bid"].to_list()) == [0.0, 9.0]
        assert join["left"]["state_rows"] == 2


def test_a_row_behind_its_sides_watermark_is_dropped_and_counted():
    schema = pl.Schema({"k": pl.String, "ts": pl.Datetime("us")})
    node = IntervalJoin(Scan("l", schema, "ts"), Scan("r", schema, "ts"), "ts", "ts",
                        -10, 10, ("k",), ("k",))
    op = IntervalJoinOperator(node)
    right = pl.DataFrame({"k": ["a"], "ts": [T0]})
    assert op.on_batch(1, Delta(right)) is None
    op.on_port_watermark(0, int(T0.timestamp() * 1e6) + 5)
    late = pl.DataFrame({"k": ["a"], "ts": [T0]})  # behind the left watermark by 5 us
    assert op.on_batch(0, Delta(late)) is None
    assert op.counters["left_late"] == 1 and op.counters["left_state_rows"] == 0
