"""The oracle itself, on cases small enough to work out by hand.

If these fail, the oracle is wrong and every engine test that uses it is suspect.
"""

from __future__ import annotations

import polars as pl
from oracle import (
    MS,
    SECOND,
    Mark,
    at,
    frame,
    from_micros,
    gen_trades,
    hop,
    mix_in_late,
    sessions,
    shuffle_within,
    split_late,
    sql_agg,
    tumble,
    window_agg,
)


def test_split_late_running_max_and_explicit_marks():
    rows = [("A", 1.0, 1, at(t * MS)) for t in (1000, 1200, 1099, 1100, 1050, 1300)]
    kept, late = split_late(rows, 100 * MS)
    assert [r[3] for r in kept] == [at(t * MS) for t in (1000, 1200, 1100, 1300)]
    assert len(late) == 2
    events = [rows[0], Mark(at(5000 * MS)), rows[1], ("A", 1.0, 1, at(5000 * MS)), Mark(at(0))]
    kept, late = split_late(events, 100 * MS)
    assert [r[3] for r in kept] == [at(1000 * MS), at(5000 * MS)]
    assert late == [rows[1]]


def test_shuffle_within_delay_makes_nothing_late_and_mix_in_late_does():
    rows = gen_trades(500, 1)
    shuffled = shuffle_within(rows, 100 * MS, 2)
    assert shuffled != rows and sorted(shuffled, key=str) == sorted(rows, key=str)
    assert split_late(shuffled, 100 * MS)[1] == []
    mixed = mix_in_late(shuffled, 100 * MS, 3, 30)
    kept, late = split_late(mixed, 100 * MS)
    assert 0 < len(late) <= 30 and len(kept) + len(late) == len(mixed)


def test_tumble_and_hop_assignment():
    rows = frame([("A", 1.0, 1, at(5_500_000)), ("A", 2.0, 2, at(6 * SECOND))])
    t = tumble(rows, SECOND)
    assert t["window_start"].to_list() == [at(5 * SECOND), at(6 * SECOND)]
    assert t["window_end"].to_list() == [at(6 * SECOND), at(7 * SECOND)]
    h = hop(rows, SECOND, 3 * SECOND)
    assert h.filter(pl.col("qty") == 1)["window_start"].to_list() == [
        at(3 * SECOND), at(4 * SECOND), at(5 * SECOND)]
    # [3, 6) does not hold 6 s: the end is excluded
    assert h.filter(pl.col("qty") == 2)["window_start"].to_list() == [
        at(4 * SECOND), at(5 * SECOND), at(6 * SECOND)]
    gaps = hop(rows, 2 * SECOND, 500 * MS)  # windows [0, .5), [2, 2.5), ...: 5.5 s in none
    assert gaps["qty"].to_list() == [2]
    assert gaps["window_start"].to_list() == [at(6 * SECOND)]


def test_offsets_and_times_before_1970():
    rows = frame([("A", 1.0, 1, from_micros(-1_500_000)), ("A", 1.0, 2, from_micros(250_000))])
    t = tumble(rows, SECOND)
    assert t["window_start"].to_list() == [from_micros(-2 * SECOND), from_micros(0)]
    t = tumble(rows, SECOND, offset_us=300 * MS)
    assert t["window_start"].to_list() == [from_micros(-1_700_000), from_micros(-700_000)]
    h = hop(rows, SECOND, 2 * SECOND, offset_us=100 * MS)
    assert h["window_start"].to_list() == [
        from_micros(-2_900_000), from_micros(-1_900_000),
        from_micros(-1_900_000 + SECOND), from_micros(-1_900_000 + 2 * SECOND)]


def test_sessions_split_at_exactly_gap():
    rows = frame([("A", None, q, at(t)) for q, t in
                  ((1, 0), (2, 100 * MS), (3, 199_999), (4, 600 * MS), (5, 400 * MS))])
    s = sessions(rows, ["symbol"], 100 * MS).sort("ts")
    assert s["__session"].to_list() == [1, 2, 2, 3, 4]


def test_sql_aggregates_nulls_and_event_order():
    rows = frame([("A", None, None, at(2)), ("A", None, 5, at(1)), ("A", None, 5, at(1)),
                  ("A", None, 7, at(1)), ("A", None, None, at(0))])
    out = window_agg(tumble(rows, SECOND), ["symbol"], {
        "n": sql_agg("count_star"), "nq": sql_agg("count", "qty"),
        "sp": sql_agg("sum", "price"), "sq": sql_agg("sum", "qty"),
        "ap": sql_agg("avg", "price"), "dq": sql_agg("count_distinct", "qty"),
        "fq": sql_agg("first_value", "qty"), "lq": sql_agg("last_value", "qty"),
        "mq": sql_agg("max", "qty"),
    }, window_cols=["window_start"])
    assert out.drop("symbol", "window_start").row(0) == (5, 3, None, 17, None, 2, None, None, 7)
    # ties at t=1 keep arrival order: 5, 5, 7; then the t=2 row (null) is last
    mid = rows.filter(pl.col("qty").is_not_null())
    out = window_agg(tumble(mid, SECOND), ["symbol"], {
        "fq": sql_agg("first_value", "qty"), "lq": sql_agg("last_value", "qty")},
        window_cols=["window_start"])
    assert out.drop("symbol", "window_start").row(0) == (5, 7)
