"""The same view written in SQL and as a LazyFrame gives the same rows; views
stacked with LazyFrames; one worker runs (more are refused); DROP leaves the
other views alone."""

from __future__ import annotations

import time

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
    read_all,
    real_rows,
    run_lazy,
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

OHLC_SQL = """
CREATE MATERIALIZED VIEW sql_bars AS
SELECT symbol,
       tumble(ts, INTERVAL '1' SECOND) AS ts,
       first_value(price) AS open, max(price) AS high, min(price) AS low,
       last_value(price) AS close, sum(qty) AS volume, count(*) AS trades,
       avg(price) AS avg_price, count(price) AS n_price
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
EMIT ON WINDOW CLOSE"""


def ohlc_lazy(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.group_by_dynamic("ts", every="1s", group_by="symbol").agg(
        pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
        pl.col("qty").sum().alias("volume"), pl.len().alias("trades"),
        pl.col("price").mean().alias("avg_price"), pl.col("price").count().alias("n_price"))


def events_for(kind: str, seed: int, n: int = 500, **gen):
    rows = gen_trades(n, seed, **gen)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, _ = split_late(events, DELAY_US)
    return events, kept


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_sql_and_lazyframe_tumbling_bars_agree(db, kind, mode):
    """No null quantities here: SQL sums nothing to NULL, Polars to 0."""
    seed = stable_seed(kind, mode, "equiv")
    db.execute(trades_ddl(100))
    db.execute(OHLC_SQL)
    db.create_materialized_view("lazy_bars", ohlc_lazy(db.stream("trades")))
    events, kept = events_for(kind, seed, null_frac=0.0)
    out = drive(db, events, mode, seed, ["sql_bars", "lazy_bars"])
    assert_same(out["sql_bars"], out["lazy_bars"], check_dtypes=False)
    assert_same(out["lazy_bars"], run_lazy(ohlc_lazy, real_rows(kept)))


@pytest.mark.parametrize("kind", SCENARIOS)
def test_sql_and_lazyframe_continuous_aggregates_agree(db, kind):
    seed = stable_seed(kind, "equiv-cont")
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW sql_totals AS
SELECT symbol, sum(qty) AS volume, count(*) AS n, max(price) AS high, min(price) AS low,
       avg(qty) AS avg_qty
FROM trades WHERE price > 95 GROUP BY symbol""")

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.filter(pl.col("price") > 95).group_by("symbol").agg(
            pl.col("qty").sum().alias("volume"), pl.len().alias("n"),
            pl.col("price").max().alias("high"), pl.col("price").min().alias("low"),
            pl.col("qty").mean().alias("avg_qty"))

    db.create_materialized_view("lazy_totals", build(db.stream("trades")))
    events, kept = events_for(kind, seed, null_frac=0.0, symbols=tuple("ABCDE"))
    out = drive(db, events, "mixed", seed, ["sql_totals", "lazy_totals"])
    expected = run_lazy(build, real_rows(kept), sort_by=None)
    assert_same(last_per_key(out["lazy_totals"], ["symbol"]), expected)
    assert_same(last_per_key(out["sql_totals"], ["symbol"]), expected, check_dtypes=False)
    assert_same(db.query("SELECT * FROM sql_totals"), expected, check_dtypes=False)
    assert_same(db.query("SELECT * FROM lazy_totals"), expected, check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_sql_and_lazyframe_row_wise_agree(db, kind):
    seed = stable_seed(kind, "equiv-rows")
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW sql_rows AS
SELECT symbol, price * qty AS notional, CAST(qty AS DOUBLE) AS q, ts
FROM trades WHERE qty > 100 AND price IS NOT NULL""")

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return (lf.filter((pl.col("qty") > 100) & pl.col("price").is_not_null())
                .select("symbol", (pl.col("price") * pl.col("qty")).alias("notional"),
                        pl.col("qty").cast(pl.Float64).alias("q"), "ts"))

    db.create_materialized_view("lazy_rows", build(db.stream("trades")))
    events, kept = events_for(kind, seed)
    out = drive(db, events, "mixed", seed, ["sql_rows", "lazy_rows"])
    expected = run_lazy(build, real_rows(kept), sort_by=None)
    assert_same(out["lazy_rows"], expected)
    assert_same(out["sql_rows"], expected)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_lazyframe_view_stacked_on_sql_view(db, kind):
    """db.stream(view) is a LazyFrame over a view's rows: 5 s bars of 1 s bars."""
    seed = stable_seed(kind, "stack-lazy")
    db.execute(trades_ddl(100))
    db.execute(OHLC_SQL)
    bars1 = db.stream("sql_bars")
    assert isinstance(bars1, pl.LazyFrame)

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="5s", group_by="symbol").agg(
            pl.col("open").first(), pl.col("high").max(), pl.col("low").min(),
            pl.col("close").last(), pl.col("volume").sum(), pl.col("trades").sum())

    db.create_materialized_view("bars5", build(bars1))
    events, kept = events_for(kind, seed, n=800, null_frac=0.0)
    out = drive(db, events, "mixed", seed, ["sql_bars", "bars5"])
    # the oracle of the upper view: Polars on what the lower view emitted
    assert_same(out["bars5"], run_lazy(build, out["sql_bars"]), check_dtypes=False)
    bars = window_agg(tumble(frame(kept), 5 * SECOND), ["symbol"], {
        "open": sql_agg("first_value", "price"), "high": sql_agg("max", "price"),
        "low": sql_agg("min", "price"), "close": sql_agg("last_value", "price"),
        "volume": sql_agg("sum", "qty"), "trades": sql_agg("count_star")},
        window_cols=["window_start"]).rename({"window_start": "ts"})
    assert_same(out["bars5"], bars, check_dtypes=False)


def test_lazyframe_stacked_on_lazyframe_with_filter(db):
    db.execute(trades_ddl(100))
    db.create_materialized_view("bars1", ohlc_lazy(db.stream("trades")))

    def busy(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.filter(pl.col("trades") >= 3).with_columns(
            range=pl.col("high") - pl.col("low")).select("symbol", "ts", "range", "trades")

    db.create_materialized_view("busy", busy(db.stream("bars1")))
    events, kept = events_for("late", 101)
    out = drive(db, events, "mixed", 101, ["busy"])
    expected = busy(run_lazy(ohlc_lazy, real_rows(kept)).lazy()).collect()
    assert expected.height > 5
    assert_same(out["busy"], expected)


# -- workers -----------------------------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2, 3])
def test_workers_give_the_same_answers(workers):
    """Keyed operators split across `workers` threads answer as one does (more
    view kinds, and restoring into another number of workers: test_workers.py)."""
    events, kept = events_for("late", 103, n=800, symbols=tuple("ABCDEFGHIJKL"))
    with lp.open(lp.Config(workers=workers)) as db:
        db.execute(trades_ddl(100))
        db.execute(OHLC_SQL)
        db.execute("CREATE MATERIALIZED VIEW totals AS SELECT symbol, count(*) AS n, "
                   "last_value(qty) AS last_qty FROM trades GROUP BY symbol")
        out = drive(db, events, "mixed", 103, ["sql_bars", "totals"])
    rows = frame(kept)
    bars = window_agg(tumble(rows, SECOND), ["symbol"], {
        "open": sql_agg("first_value", "price"), "high": sql_agg("max", "price"),
        "low": sql_agg("min", "price"), "close": sql_agg("last_value", "price"),
        "volume": sql_agg("sum", "qty"), "trades": sql_agg("count_star"),
        "avg_price": sql_agg("avg", "price"), "n_price": sql_agg("count", "price")},
        window_cols=["window_start"]).rename({"window_start": "ts"})
    assert_same(out["sql_bars"], bars, check_dtypes=False)
    totals = rows.sort("ts", ARRIVAL).group_by("symbol").agg(
        n=sql_agg("count_star"), last_qty=sql_agg("last_value", "qty"))
    assert_same(last_per_key(out["totals"], ["symbol"]), totals, check_dtypes=False)


# -- DROP ----------------------------------------------------------------------------------

def test_drop_view_leaves_others_exact(db):
    """Dropping one view mid-stream neither disturbs another view's answer nor
    keeps the dropped one's sink open; a new view under the same name starts empty."""
    db.execute(trades_ddl(100))
    db.execute(OHLC_SQL)
    db.execute("CREATE MATERIALIZED VIEW doomed AS SELECT symbol, count(*) AS n "
               "FROM trades GROUP BY symbol")
    bars_sub = db.sink("sql_bars").subscribe()
    events, kept = events_for("late", 107, null_frac=0.0)
    src = db.source("trades")
    db.start()
    half = len(events) // 2
    src.push_batch(events[:half])
    first, _ = split_late(events[:half], DELAY_US)
    # A view sees the rows the engine takes after it is created: let the first
    # half through before the new view exists.
    deadline = time.monotonic() + 30
    while db.metrics()["views"]["sql_bars"]["rows_in"] < len(first):
        assert time.monotonic() < deadline, "the first half was never processed"
        time.sleep(0.005)
    db.execute("DROP MATERIALIZED VIEW doomed")
    db.execute("CREATE MATERIALIZED VIEW doomed AS SELECT symbol, count(*) AS n "
               "FROM trades GROUP BY symbol")
    doomed_sub = db.sink("doomed").subscribe()
    src.push_batch(events[half:])
    db.stop()
    expected = run_lazy(ohlc_lazy, real_rows(kept))
    assert_same(read_all(bars_sub), expected, check_dtypes=False)
    # the new 'doomed' saw exactly the second half's rows that were not late
    second = read_all(doomed_sub)
    assert last_per_key(second, ["symbol"])["n"].sum() == len(kept) - len(first)
