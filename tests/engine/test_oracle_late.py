"""Late rows: counted in metrics, absent from every result; explicit watermarks."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pytest
from oracle import (
    ARRIVAL,
    MODES,
    MS,
    Mark,
    assert_same,
    at,
    drive,
    frame,
    from_micros,
    gen_trades,
    mix_in_late,
    shuffle_within,
    split_late,
    sql_agg,
    stable_seed,
    to_micros,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

ROWS_VIEW = """
CREATE MATERIALIZED VIEW passthrough AS SELECT symbol, price, qty, ts FROM trades"""
COUNTS_VIEW = """
CREATE MATERIALIZED VIEW counts AS
SELECT symbol, tumble(ts, INTERVAL '500' MILLISECOND) AS window_start,
       count(*) AS n, sum(qty) AS volume, first_value(qty) AS first_qty
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '500' MILLISECOND)"""


def counts_oracle(rows: pl.DataFrame) -> pl.DataFrame:
    return window_agg(tumble(rows, 500 * MS), ["symbol"],
                      {"n": sql_agg("count_star"), "volume": sql_agg("sum", "qty"),
                       "first_qty": sql_agg("first_value", "qty")},
                      window_cols=["window_start"])


@pytest.mark.parametrize("delay_ms", [0, 1, 100, 1000])
@pytest.mark.parametrize("mode", MODES)
def test_late_rows_counted_and_absent(db, mode, delay_ms):
    delay_us = delay_ms * MS
    seed = stable_seed(mode, delay_ms)
    db.execute(trades_ddl(delay_ms))
    db.execute(ROWS_VIEW)
    db.execute(COUNTS_VIEW)
    rows = gen_trades(500, seed)
    events = mix_in_late(shuffle_within(rows, max(delay_us, 1), seed), delay_us, seed, 40)
    kept, late = split_late(events, delay_us)
    assert len(late) >= 20
    out = drive(db, events, mode, seed, ["passthrough", "counts"])
    metrics = db.metrics()
    assert metrics["sources"]["trades"]["late"] == len(late)
    assert metrics["sources"]["trades"]["pushed"] == len(kept)
    kept_frame = frame(kept)
    assert_same(out["passthrough"], kept_frame.drop(ARRIVAL))
    assert_same(out["counts"], counts_oracle(kept_frame), check_dtypes=False)
    views = metrics["views"]
    assert views["passthrough"]["rows_in"] == len(kept)
    assert views["passthrough"]["rows_out"] == len(kept)
    assert views["counts"]["rows_in"] == len(kept)
    assert views["counts"]["rows_out"] == out["counts"].height
    assert views["counts"]["watermark"] == dt.datetime.max  # every source closed at stop


def test_late_rule_is_against_running_max_within_one_batch(db):
    """Inside one push_batch / push_arrow the watermark moves row by row."""
    db.execute(trades_ddl(100))
    db.execute(ROWS_VIEW)
    ts_ms = [1000, 1200, 1099, 1100, 1050, 1300, 1201, 1199, 2000, 1900, 1899]
    events = [("A", 1.0, t, at(t * MS)) for t in ts_ms]
    kept, late = split_late(events, 100 * MS)
    assert [r[2] for r in kept] == [1000, 1200, 1100, 1300, 1201, 2000, 1900]
    out = drive(db, events, "arrow", 1, ["passthrough"])
    assert out["passthrough"]["qty"].to_list() == [1000, 1200, 1100, 1300, 1201, 2000, 1900]
    assert db.metrics()["sources"]["trades"]["late"] == len(late) == 4


@pytest.mark.parametrize("mode", MODES)
def test_explicit_watermarks_close_windows_and_make_rows_late(db, mode):
    """source.watermark(ts) calls mixed into the stream: rows below an explicit
    watermark are late even if within the delay of the max ts."""
    seed = stable_seed("marks", mode)
    rng = random.Random(seed)
    db.execute(trades_ddl(1000))
    db.execute(ROWS_VIEW)
    db.execute(COUNTS_VIEW)
    rows = shuffle_within(gen_trades(600, seed), 1000 * MS, seed)
    events: list = []
    high = 0
    for r in rows:
        high = max(high, to_micros(r[3]))
        if rng.random() < 0.05:  # somewhere between max - delay and max
            events.append(Mark(from_micros(high - rng.randrange(0, 1000 * MS))))
        events.append(r)
    kept, late = split_late(events, 1000 * MS)
    assert late, "explicit watermarks should make some shuffled rows late"
    out = drive(db, events, mode, seed, ["passthrough", "counts"])
    assert db.metrics()["sources"]["trades"]["late"] == len(late)
    kept_frame = frame(kept)
    assert_same(out["passthrough"], kept_frame.drop(ARRIVAL))
    assert_same(out["counts"], counts_oracle(kept_frame), check_dtypes=False)


def test_window_closed_by_watermark_never_reopens(db):
    """A row of an already emitted window is late, and the emitted row stays final."""
    db.execute(trades_ddl(100))
    db.execute(COUNTS_VIEW)
    events = [("A", 1.0, 1, at(0)), ("A", 1.0, 2, at(100 * MS)),
              ("A", 1.0, 3, at(700 * MS)),            # watermark 600 ms: [0, 500) closes
              ("A", 1.0, 4, at(499 * MS)),            # late: its window was emitted
              ("A", 1.0, 5, at(600 * MS))]            # at the watermark: kept
    out = drive(db, events, "row", 0, ["counts"], start=True)["counts"]
    assert out.sort("window_start").rows() == [
        ("A", at(0), 2, 3, 1), ("A", at(500 * MS), 2, 8, 5)]
    assert db.metrics()["sources"]["trades"]["late"] == 1


def test_views_see_identical_rows_whatever_the_batching():
    """The same events through all four feeding modes give identical sinks."""
    rows = gen_trades(400, 91)
    events = mix_in_late(shuffle_within(rows, 100 * MS, 91), 100 * MS, 92, 20)
    results = []
    for mode in MODES:
        with lp.open() as db:
            db.execute(trades_ddl(100))
            db.execute(COUNTS_VIEW)
            results.append(drive(db, events, mode, 93, ["counts"])["counts"])
    for other in results[1:]:
        assert_same(other, results[0])
    assert results[0]["n"].sum() == len(split_late(events, 100 * MS)[0])
