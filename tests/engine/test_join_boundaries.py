"""Rows exactly at a watermark and exactly at a join's bound: a row on the
watermark is on time, so the state it can still match must be there. Each
scenario pushes one row at a time and lets the engine take it before the next,
so the order of arrival across the two sources is the one written; every view
keeps the watermark contract (`join_oracle.WatermarkContract`)."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest
from join_oracle import watch_watermarks

import laminar_polars as lp

T0 = dt.datetime(2024, 1, 1)
SOURCES = """
CREATE SOURCE trades (sym VARCHAR NOT NULL, px DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts);
CREATE SOURCE quotes (sym VARCHAR NOT NULL, bid DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts)"""


def ms(n: int) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=n)


def _run(view_sql: str, arrivals: list[tuple[str, tuple]]) -> pl.DataFrame:
    """Create view ``v``, push ``arrivals`` one by one (each taken by the engine
    before the next), stop; what ``v`` emitted."""
    db = lp.open()
    db.execute(SOURCES)
    db.execute(f"CREATE MATERIALIZED VIEW v AS {view_sql}")
    contracts = watch_watermarks(db)
    sub = db.sink("v").subscribe()
    db.start()
    for taken, (source, row) in enumerate(arrivals, 1):
        db.source(source).push(row)
        deadline = time.monotonic() + 10
        while db.metrics()["views"]["v"]["rows_in"] < taken:
            assert time.monotonic() < deadline, "the engine never took the row"
            time.sleep(0.001)
    db.stop()
    assert not [line for contract in contracts for line in contract.broken]
    frames = []
    while True:
        try:
            frames.append(sub.recv(timeout=10))
        except lp.Closed:
            return pl.concat(frames) if frames else pl.DataFrame()


@pytest.mark.parametrize("waiting", [False, True])
def test_asof_waits_for_a_right_row_exactly_on_the_right_watermark(waiting):
    first = [("quotes", ("A", 0.0, ms(5))), ("trades", ("A", 7.0, ms(10))),
             ("quotes", ("B", 1.0, ms(10)))] if waiting else [
             ("quotes", ("A", 1.0, ms(10))), ("trades", ("A", 7.0, ms(10)))]
    # the right watermark reaches 10 ms (with the trade waiting, or before it came):
    # the trade's match is not final yet, this later arrival on time wins
    got = _run("SELECT t.px, q.bid FROM trades t ASOF JOIN quotes q "
               "ON t.sym = q.sym AND t.ts >= q.ts",
               [*first, ("quotes", ("A", 2.0, ms(10))), ("quotes", ("A", 3.0, ms(11)))])
    assert got.rows() == [(7.0, 2.0)]


@pytest.mark.parametrize(("bound", "pairs"), [
    ("q.ts BETWEEN t.ts - INTERVAL '200' MILLISECOND AND t.ts + INTERVAL '100' MILLISECOND", 2),
    ("q.ts > t.ts - INTERVAL '200' MILLISECOND AND q.ts < t.ts + INTERVAL '100' MILLISECOND", 0),
])
def test_interval_keeps_rows_a_row_on_the_watermark_can_reach(bound, pairs):
    got = _run(f"SELECT t.px, q.bid FROM trades t JOIN quotes q ON t.sym = q.sym AND {bound}", [
        ("trades", ("A", 1.0, ms(0))),
        ("quotes", ("B", 0.0, ms(100))),      # right watermark: t.ts + upper, exactly
        ("quotes", ("A", 2.0, ms(100))),      # on time, at the upper bound
        ("quotes", ("A", 3.0, ms(300))),      # (left rows wait for the right)
        ("trades", ("B", 0.0, ms(500))),      # left watermark: 500 ms
        ("trades", ("A", 4.0, ms(500))),      # at the lower bound of the quote at 300 ms
    ])
    assert got.height == pairs
    if pairs:
        assert sorted(got.rows()) == [(1.0, 2.0), (4.0, 3.0)]


@pytest.mark.parametrize("how", ["JOIN", "LEFT JOIN"])
def test_window_join_keeps_a_left_row_on_the_right_watermark(how):
    got = _run(f"SELECT t.px, q.bid FROM trades t {how} quotes q "
               "ON t.sym = q.sym AND t.ts = q.ts", [
                   ("trades", ("A", 1.0, ms(10))),
                   ("quotes", ("B", 0.0, ms(10))),   # right watermark: 10 ms
                   ("quotes", ("A", 2.0, ms(10))),   # on time: matches the trade
                   ("trades", ("C", 5.0, ms(20))),
                   ("quotes", ("D", 0.0, ms(30)))])
    expected = [(1.0, 2.0)] + ([(5.0, None)] if how == "LEFT JOIN" else [])
    assert sorted(got.rows(), key=str) == sorted(expected, key=str)


def test_interval_output_watermark_waits_for_pairs_of_kept_left_rows():
    """A window over an interval join: a pair can be made of a left row as old
    as the right watermark minus the upper bound, so its window must wait."""
    got = _run("SELECT t.sym, count(*) AS n, tumble(t.ts, INTERVAL '1' SECOND) AS ws "
               "FROM trades t JOIN quotes q ON t.sym = q.sym "
               "AND q.ts BETWEEN t.ts AND t.ts + INTERVAL '5' SECOND "
               "GROUP BY t.sym, tumble(t.ts, INTERVAL '1' SECOND)", [
                   ("trades", ("A", 1.0, ms(500))),
                   ("trades", ("Z", 0.0, ms(3000))),     # left watermark: 3 s
                   ("quotes", ("Z", 0.0, ms(2000))),     # right watermark: 2 s
                   ("quotes", ("A", 2.0, ms(4000))),     # pairs with the trade at 0.5 s
                   ("trades", ("Z", 0.0, ms(9000))),
                   ("quotes", ("Z", 0.0, ms(9000)))])
    assert got.filter(pl.col("sym") == "A").select("n").item() == 1
