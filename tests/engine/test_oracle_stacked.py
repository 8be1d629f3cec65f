"""Views stacked on views, and db.query over view contents, against the oracle."""

from __future__ import annotations

import polars as pl
import pytest
from oracle import (
    ARRIVAL,
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    drive,
    frame,
    gen_trades,
    last_per_key,
    scenario,
    split_late,
    sql_agg,
    stable_seed,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

DELAY_US = 100 * MS

BARS_1S = """
CREATE MATERIALIZED VIEW bars1 AS
SELECT symbol,
       tumble(ts, INTERVAL '1' SECOND) AS window_start,{end}
       first_value(price) AS open, max(price) AS high, min(price) AS low,
       last_value(price) AS close, sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
EMIT ON WINDOW CLOSE"""

BARS_5S = """
CREATE MATERIALIZED VIEW bars5 AS
SELECT symbol,
       tumble({t}, INTERVAL '5' SECOND) AS window_start,
       tumble_end({t}, INTERVAL '5' SECOND) AS window_end,
       first_value(open) AS open, max(high) AS high, min(low) AS low,
       last_value(close) AS close, sum(volume) AS volume, sum(trades) AS trades
FROM bars1
GROUP BY symbol, tumble({t}, INTERVAL '5' SECOND)
EMIT ON WINDOW CLOSE"""


WINDOW_END = """
       tumble_end(ts, INTERVAL '1' SECOND) AS window_end,"""


def bars_1s(with_end: bool = True) -> str:
    return BARS_1S.format(end=WINDOW_END if with_end else "")


def bars(rows: pl.DataFrame, size_us: int, time: str = "ts",
         with_end: bool = True) -> pl.DataFrame:
    cols = ["window_start", "window_end"] if with_end else ["window_start"]
    return window_agg(tumble(rows, size_us, time), ["symbol"], window_cols=cols, aggs={
        "open": sql_agg("first_value", "price"), "high": sql_agg("max", "price"),
        "low": sql_agg("min", "price"), "close": sql_agg("last_value", "price"),
        "volume": sql_agg("sum", "qty"), "trades": sql_agg("count_star")}, time=time)


def bars_of_bars(bars1: pl.DataFrame, size_us: int, time: str) -> pl.DataFrame:
    names = {"window_start": "s1", "window_end": "e1"}
    rows = bars1.with_row_index(ARRIVAL).rename(
        {k: v for k, v in names.items() if k in bars1.columns})
    time = names[time]
    return window_agg(tumble(rows, size_us, time), ["symbol"], {
        "open": sql_agg("first_value", "open"), "high": sql_agg("max", "high"),
        "low": sql_agg("min", "low"), "close": sql_agg("last_value", "close"),
        "volume": sql_agg("sum", "volume"), "trades": sql_agg("sum", "trades")}, time=time)


def feed(db: lp.LaminarDB, kind: str, mode: str, seed: int, sinks, n: int = 600, **how):
    rows = gen_trades(n, seed)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, _ = split_late(events, DELAY_US)
    return drive(db, events, mode, seed, sinks, delay_us=DELAY_US, **how), frame(kept)


@pytest.mark.parametrize("time", ["window_start", "window_end"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_five_second_bars_over_one_second_bars(db, kind, mode, time):
    """Over window_end (bars1 outputs start and end: the end is its event time)
    or over window_start (bars1 outputs only the start)."""
    with_end = time == "window_end"
    db.execute(trades_ddl(100))
    db.execute(bars_1s(with_end))
    db.execute(BARS_5S.format(t=time))
    out, rows = feed(db, kind, mode, stable_seed(kind, mode, time), ["bars1", "bars5"])
    bars1 = bars(rows, SECOND, with_end=with_end)
    assert_same(out["bars1"], bars1, check_dtypes=False)
    expected5 = bars_of_bars(bars1, 5 * SECOND, time)
    assert expected5.height > 5
    assert_same(out["bars5"], expected5, check_dtypes=False)
    if time == "window_start":  # 5 s bars of 1 s bars are 5 s bars of the trades
        assert_same(out["bars5"], bars(rows, 5 * SECOND), check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_filter_view_over_view(db, kind):
    db.execute(trades_ddl(100))
    db.execute(bars_1s())
    db.execute("""
CREATE MATERIALIZED VIEW busy AS
SELECT symbol, window_start, volume, trades, high - low AS range
FROM bars1 WHERE trades >= 3 AND volume IS NOT NULL""")
    out, rows = feed(db, kind, "mixed", stable_seed(kind, "busy"), ["busy"])
    expected = (bars(rows, SECOND)
                .filter((pl.col("trades") >= 3) & pl.col("volume").is_not_null())
                .select("symbol", "window_start", "volume", "trades",
                        (pl.col("high") - pl.col("low")).alias("range")))
    assert expected.height > 5
    assert_same(out["busy"], expected, check_dtypes=False)


def test_three_levels_and_a_continuous_aggregate_on_top(db):
    """trades -> 1 s bars -> 5 s bars -> running totals per symbol (upserts)."""
    db.execute(trades_ddl(100))
    db.execute(bars_1s())
    db.execute(BARS_5S.format(t="window_end"))
    db.execute("""
CREATE MATERIALIZED VIEW totals AS
SELECT symbol, sum(volume) AS volume, sum(trades) AS trades, count(*) AS bars,
       max(high) AS high
FROM bars5 GROUP BY symbol""")
    out, rows = feed(db, "late", "mixed", 81, ["totals"], n=800)
    bars5 = bars_of_bars(bars(rows, SECOND), 5 * SECOND, "window_end")
    expected = bars5.group_by("symbol").agg(
        volume=sql_agg("sum", "volume"), trades=sql_agg("sum", "trades"),
        bars=sql_agg("count_star"), high=sql_agg("max", "high"))
    assert_same(last_per_key(out["totals"], ["symbol"]), expected, check_dtypes=False)


# -- db.query over view contents ------------------------------------------------------------

def test_query_after_stop_equals_batch_answer(db):
    db.execute(trades_ddl(100))
    db.execute(bars_1s())
    db.execute("""
CREATE MATERIALIZED VIEW totals AS
SELECT symbol, sum(qty) AS volume, count(*) AS n, last_value(price) AS last_price
FROM trades GROUP BY symbol""")
    db.execute("""
CREATE MATERIALIZED VIEW live AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, count(*) AS n,
       max(price) AS high
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND) EMIT ON UPDATE""")
    _, rows = feed(db, "late", "mixed", 83, [])
    bars1 = bars(rows, SECOND)
    assert_same(db.query("SELECT * FROM bars1"), bars1, check_dtypes=False)
    assert_same(
        db.query("SELECT symbol, sum(volume) AS volume, max(high) AS high FROM bars1 "
                 "WHERE trades > 1 GROUP BY symbol"),
        bars1.filter(pl.col("trades") > 1).group_by("symbol").agg(
            volume=sql_agg("sum", "volume"), high=sql_agg("max", "high")),
        check_dtypes=False)
    # a continuous aggregate holds one row per key
    totals = rows.sort("ts", ARRIVAL).group_by("symbol").agg(
        volume=sql_agg("sum", "qty"), n=sql_agg("count_star"),
        last_price=sql_agg("last_value", "price"))
    assert_same(db.query("SELECT * FROM totals"), totals, check_dtypes=False)
    # an EMIT ON UPDATE window view holds one (final) row per key and window
    live = window_agg(tumble(rows, SECOND), ["symbol"],
                      {"n": sql_agg("count_star"), "high": sql_agg("max", "price")},
                      window_cols=["window_start"])
    assert_same(db.query("SELECT * FROM live"), live, check_dtypes=False)


def test_query_joins_two_views(db):
    db.execute(trades_ddl(100))
    db.execute(bars_1s())
    db.execute("""
CREATE MATERIALIZED VIEW totals AS
SELECT symbol, count(*) AS n FROM trades GROUP BY symbol""")
    _, rows = feed(db, "shuffled", "arrow", 85, [])
    got = db.query("SELECT b.symbol, b.window_start, b.trades, t.n FROM bars1 b "
                   "JOIN totals t ON b.symbol = t.symbol")
    expected = bars(rows, SECOND).join(
        rows.group_by("symbol").agg(n=pl.len()), on="symbol").select(
        "symbol", "window_start", "trades", "n")
    assert_same(got, expected, check_dtypes=False)


# -- row-wise views over a continuous aggregate (an upsert stream) -------------------------

TOTALS = """
CREATE MATERIALIZED VIEW totals AS
SELECT symbol, count(*) AS n, sum(qty) AS volume FROM trades GROUP BY symbol"""


def totals_oracle(rows: pl.DataFrame) -> pl.DataFrame:
    return rows.group_by("symbol").agg(n=sql_agg("count_star"), volume=sql_agg("sum", "qty"))


def test_monotone_filter_over_continuous_aggregate(db):
    """A view filtering an upsert stream with a predicate that, once true, stays
    true: its sink's last row per key and its contents (db.query) are the batch
    answer, one row per key."""
    db.execute(trades_ddl(100))
    db.execute(TOTALS)
    db.execute("CREATE MATERIALIZED VIEW busy AS SELECT symbol, n FROM totals WHERE n >= 20")
    out, rows = feed(db, "late", "mixed", 87, ["busy"], n=300, rounds=5, settle_view="totals")
    expected = totals_oracle(rows).filter(pl.col("n") >= 20).select("symbol", "n")
    assert 0 < expected.height
    assert_same(last_per_key(out["busy"], ["symbol"]), expected, check_dtypes=False)
    assert_same(db.query("SELECT * FROM busy"), expected, check_dtypes=False)


def test_non_monotone_filter_over_continuous_aggregate_exact_or_refused(db):
    """A key can pass the filter and fail it later (n odd, then even): the view's
    contents must follow, or the view must be refused at registration."""
    db.execute(trades_ddl(100))
    db.execute(TOTALS)
    try:
        db.execute("CREATE MATERIALIZED VIEW odd AS SELECT symbol, n FROM totals "
                   "WHERE n % 2 = 1")
    except lp.PlanError:
        return
    _, rows = feed(db, "shuffled", "row", 89, [], n=301, rounds=5, settle_view="totals")
    expected = totals_oracle(rows).filter(pl.col("n") % 2 == 1).select("symbol", "n")
    assert_same(db.query("SELECT * FROM odd"), expected, check_dtypes=False)
