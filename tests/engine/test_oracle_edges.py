"""Edge cases against the oracle: window offsets, times before 1970, GROUP BY
expressions, more column types, long delays, LazyFrame EMIT ON UPDATE and
group_by_dynamic options."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pyarrow as pa
import pytest
from oracle import (
    ARRIVAL,
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    drive,
    feed,
    frame,
    from_micros,
    gen_trades,
    hop,
    interval,
    last_per_key,
    read_all,
    real_rows,
    run_lazy,
    scenario,
    shuffle_within,
    split_late,
    sql_agg,
    stable_seed,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

DELAY_US = 100 * MS

AGGS_SQL = ("count(*) AS n, sum(qty) AS volume, min(price) AS low, "
            "first_value(price) AS open, last_value(qty) AS last_qty")
AGGS = {"n": sql_agg("count_star"), "volume": sql_agg("sum", "qty"),
        "low": sql_agg("min", "price"), "open": sql_agg("first_value", "price"),
        "last_qty": sql_agg("last_value", "qty")}


def run(db, view_sql: str, kind: str, mode: str, seed: int, *, delay_us: int = DELAY_US,
        rows=None, n: int = 400, sinks=("v",), **gen):
    db.execute(trades_ddl(delay_us=delay_us))
    db.execute(view_sql)
    rows = gen_trades(n, seed, **gen) if rows is None else rows
    events = scenario(kind, rows, delay_us, seed)
    kept, late = split_late(events, delay_us)
    out = drive(db, events, mode, seed, list(sinks))
    assert db.metrics()["sources"]["trades"]["late"] == len(late)
    return out["v"] if sinks == ("v",) else out, frame(kept)


# -- offsets and times before 1970 --------------------------------------------------------

@pytest.mark.parametrize("kind", SCENARIOS)
def test_sql_tumble_with_offset(db, kind):
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND, INTERVAL '300' MILLISECOND) AS window_start,
       tumble_end(ts, INTERVAL '1' SECOND, INTERVAL '300' MILLISECOND) AS window_end,
       {AGGS_SQL}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND, INTERVAL '300' MILLISECOND)""",
                    kind, "mixed", stable_seed(kind, "tumble-offset"))
    expected = window_agg(tumble(rows, SECOND, offset_us=300 * MS), ["symbol"], AGGS)
    assert_same(got, expected, check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_sql_hop_with_offset(db, kind):
    s, z, o = interval(400 * MS), interval(SECOND), interval(150 * MS)
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, hop(ts, {s}, {z}, {o}) AS window_start, hop_end(ts, {s}, {z}, {o}) AS window_end,
       {AGGS_SQL}
FROM trades GROUP BY symbol, hop(ts, {s}, {z}, {o})""",
                    kind, "mixed", stable_seed(kind, "hop-offset"))
    expected = window_agg(hop(rows, 400 * MS, SECOND, offset_us=150 * MS), ["symbol"], AGGS)
    assert_same(got, expected, check_dtypes=False)


@pytest.mark.parametrize("mode", MODES)
def test_windows_around_the_epoch(db, mode):
    """Event times on both sides of 1970-01-01: windows stay aligned to the epoch."""
    seed = stable_seed(mode, "epoch")
    rows = gen_trades(300, seed, start_us=0)
    rows = [(s, p, q, ts - (rows[150][3] - dt.datetime(1970, 1, 1))) for s, p, q, ts in rows]
    assert rows[0][3] < dt.datetime(1970, 1, 1) < rows[-1][3]
    out, kept = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, {AGGS_SQL}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW h AS
SELECT symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '1500' MILLISECOND) AS window_start,
       {AGGS_SQL}
FROM trades GROUP BY symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '1500' MILLISECOND)
""", "late", mode, seed, rows=rows, sinks=("v", "h"))
    w = ["window_start"]
    assert_same(out["v"], window_agg(tumble(kept, SECOND), ["symbol"], AGGS, window_cols=w),
                check_dtypes=False)
    assert_same(out["h"], window_agg(hop(kept, 500 * MS, 1500 * MS), ["symbol"], AGGS,
                                     window_cols=w), check_dtypes=False)


# -- long delays -------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", SCENARIOS)
def test_long_delay_many_open_windows(db, kind):
    """A 10 s delay with rows shuffled across it: dozens of windows open at once."""
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '200' MILLISECOND) AS window_start, {AGGS_SQL}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '200' MILLISECOND)""",
                    kind, "mixed", stable_seed(kind, "long"), delay_us=10 * SECOND, n=1000)
    expected = window_agg(tumble(rows, 200 * MS), ["symbol"], AGGS, window_cols=["window_start"])
    assert_same(got, expected, check_dtypes=False)


# -- GROUP BY expressions ------------------------------------------------------------

def test_group_by_expression_keys(db):
    out, rows = run(db, """
CREATE MATERIALIZED VIEW v AS
SELECT symbol, qty % 3 AS bucket, count(*) AS n, sum(price) AS turnover
FROM trades GROUP BY symbol, qty % 3;
CREATE MATERIALIZED VIEW w AS
SELECT CASE WHEN price >= 100 THEN 'high' ELSE 'low' END AS band,
       tumble(ts, INTERVAL '1' SECOND) AS window_start, count(*) AS n, max(qty) AS max_qty
FROM trades
GROUP BY CASE WHEN price >= 100 THEN 'high' ELSE 'low' END, tumble(ts, INTERVAL '1' SECOND)
""", "late", "mixed", 201, sinks=("v", "w"), null_frac=0.2)
    buckets = rows.with_columns(bucket=pl.col("qty") % 3).group_by("symbol", "bucket").agg(
        n=sql_agg("count_star"), turnover=sql_agg("sum", "price"))
    assert buckets["bucket"].null_count() > 0
    assert_same(last_per_key(out["v"], ["symbol", "bucket"]), buckets, check_dtypes=False)
    banded = rows.with_columns(band=pl.when(pl.col("price") >= 100).then(pl.lit("high"))
                               .otherwise(pl.lit("low")))
    expected = window_agg(tumble(banded, SECOND), ["band"],
                          {"n": sql_agg("count_star"), "max_qty": sql_agg("max", "qty")},
                          window_cols=["window_start"])
    assert_same(out["w"], expected, check_dtypes=False)


# -- more column types ----------------------------------------------------------------------------

WIDE_DDL = """
CREATE SOURCE wide (
    k  VARCHAR NOT NULL,
    i  INT,
    s  SMALLINT,
    r  REAL,
    b  BOOLEAN,
    t  TEXT,
    ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '50' MILLISECOND
)"""
WIDE_SCHEMA = pl.Schema({"k": pl.String, "i": pl.Int32, "s": pl.Int16, "r": pl.Float32,
                         "b": pl.Boolean, "t": pl.String, "ts": pl.Datetime("us")})
WIDE_ARROW = pa.schema({"k": pa.string(), "i": pa.int32(), "s": pa.int16(),
                        "r": pa.float32(), "b": pa.bool_(), "t": pa.string(),
                        "ts": pa.timestamp("us")})


def wide_rows(n: int, seed: int) -> list[tuple]:
    rng = random.Random(seed)
    t = 0
    rows = []

    def maybe(value):
        return None if rng.random() < 0.15 else value

    for _ in range(n):
        t += rng.choice((0, 3, 20, 90)) * MS
        rows.append((rng.choice("XYZ"), maybe(rng.randrange(-1000, 1000)),
                     maybe(rng.randrange(-50, 50)), maybe(rng.randrange(-400, 400) / 8),
                     maybe(rng.random() < 0.5), maybe(rng.choice(["a", "bb", "ccc", "é"])),
                     from_micros(1_700_000_000 * SECOND + t)))
    return shuffle_within(rows, 50 * MS, seed, ts_index=6)


def wide_aggs() -> list[pl.Expr]:
    out = [pl.len().alias("n")]
    for c in ("i", "s", "r"):
        out += [pl.col(c).sum().alias(f"{c}_sum"), pl.col(c).mean().alias(f"{c}_mean"),
                pl.col(c).min().alias(f"{c}_min"), pl.col(c).max().alias(f"{c}_max")]
    for c in ("i", "s", "r", "b", "t"):
        out += [pl.col(c).first().alias(f"{c}_first"), pl.col(c).last().alias(f"{c}_last"),
                pl.col(c).n_unique().alias(f"{c}_distinct"), pl.col(c).count().alias(f"{c}_n")]
    out += [pl.col("t").min().alias("t_min"), pl.col("t").max().alias("t_max"),
            pl.col("b").sum().alias("b_sum")]
    return out


@pytest.mark.parametrize("shape", ["dynamic", "group_by"])
@pytest.mark.parametrize("mode", MODES)
def test_lazyframe_aggregates_over_more_types_keep_polars_dtypes(db, shape, mode):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        if shape == "dynamic":
            return lf.group_by_dynamic("ts", every="250ms", group_by="k").agg(wide_aggs())
        return lf.group_by("k").agg(wide_aggs())

    db.execute(WIDE_DDL)
    db.create_materialized_view("v", build(db.stream("wide")))
    sub = db.sink("v").subscribe()
    rows = wide_rows(300, stable_seed(shape, mode))
    feed(db.source("wide"), rows, mode, 7, arrow_schema=WIDE_ARROW)
    db.stop()
    got = read_all(sub)
    data = real_rows(rows, WIDE_SCHEMA)
    if shape == "dynamic":
        expected = run_lazy(build, data)
    else:
        got = last_per_key(got, ["k"])
        expected = run_lazy(build, data, sort_by=None)
    assert got.schema == expected.schema
    assert_same(got, expected, rtol=1e-6)


def test_sql_aggregates_over_more_types(db):
    db.execute(WIDE_DDL)
    db.execute("""
CREATE MATERIALIZED VIEW v AS
SELECT k, tumble(ts, INTERVAL '250' MILLISECOND) AS window_start,
       sum(i) AS i_sum, sum(s) AS s_sum, sum(r) AS r_sum, avg(s) AS s_avg,
       min(t) AS t_min, max(t) AS t_max, first_value(t) AS t_first, last_value(b) AS b_last,
       count(DISTINCT t) AS t_distinct, count(b) AS b_n
FROM wide GROUP BY k, tumble(ts, INTERVAL '250' MILLISECOND)""")
    sub = db.sink("v").subscribe()
    rows = wide_rows(300, 211)
    feed(db.source("wide"), rows, "mixed", 3, arrow_schema=WIDE_ARROW)
    db.stop()
    data = frame(rows, WIDE_SCHEMA)
    expected = window_agg(tumble(data, 250 * MS), ["k"], {
        "i_sum": sql_agg("sum", "i"), "s_sum": sql_agg("sum", "s"), "r_sum": sql_agg("sum", "r"),
        "s_avg": sql_agg("avg", "s"), "t_min": sql_agg("min", "t"), "t_max": sql_agg("max", "t"),
        "t_first": sql_agg("first_value", "t"), "b_last": sql_agg("last_value", "b"),
        "t_distinct": sql_agg("count_distinct", "t"), "b_n": sql_agg("count", "b")},
        window_cols=["window_start"])
    assert ARRIVAL not in expected.columns
    assert_same(read_all(sub), expected, check_dtypes=False, rtol=1e-5)


# -- LazyFrame EMIT ON UPDATE and group_by_dynamic options ------------------------------

@pytest.mark.parametrize("kind", SCENARIOS)
def test_lazyframe_group_by_dynamic_emit_on_update(db, kind):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="1s", period="2s", group_by="symbol").agg(
            pl.len().alias("n"), pl.col("qty").sum().alias("volume"),
            pl.col("price").last().alias("close"))

    seed = stable_seed(kind, "lazy-upd")
    db.execute(trades_ddl(100))
    db.create_materialized_view("v", build(db.stream("trades")), emit="on_update")
    rows = gen_trades(400, seed)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, _ = split_late(events, DELAY_US)
    got = drive(db, events, "mixed", seed, ["v"], start=True)["v"]
    expected = run_lazy(build, real_rows(kept))
    assert_same(last_per_key(got, ["symbol", "ts"]), expected)
    assert_same(db.query("SELECT * FROM v"), expected)


OPTIONS = {
    "closed-right": dict(closed="right"),
    "closed-both": dict(closed="both"),
    "label-right": dict(label="right"),
    "label-datapoint": dict(label="datapoint"),
    "start_by-datapoint": dict(start_by="datapoint"),
    "boundaries": dict(include_boundaries=True),
}


@pytest.mark.parametrize("options", list(OPTIONS.values()), ids=list(OPTIONS))
def test_group_by_dynamic_options_exact_or_refused(db, options):
    """Either the view equals Polars, or registration refuses it with PlanError."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="500ms", period="1s", group_by="symbol",
                                   **options).agg(pl.len().alias("n"),
                                                  pl.col("qty").sum().alias("q"))

    db.execute(trades_ddl(100))
    try:
        db.create_materialized_view("v", build(db.stream("trades")))
    except lp.PlanError:
        return
    rows = gen_trades(300, 221)
    events = scenario("late", rows, DELAY_US, 221)
    kept, _ = split_late(events, DELAY_US)
    got = drive(db, events, "mixed", 221, ["v"])["v"]
    assert_same(got, run_lazy(build, real_rows(kept)))


# -- NaN, infinities, signed zeros -------------------------------------------------------------

SPECIAL = [float("nan"), 1.0, -0.0, 0.0, float("inf"), -float("inf"), None, 2.5]


@pytest.mark.parametrize("shape", ["dynamic", "group_by"])
def test_nan_and_infinities_as_polars(db, shape):
    """Partial aggregates merged across micro-batches treat NaN, +-inf and -0.0
    exactly as one Polars aggregation over all rows does."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        aggs = [pl.col("price").max().alias("mx"), pl.col("price").min().alias("mn"),
                pl.col("price").sum().alias("s"), pl.col("price").mean().alias("m"),
                pl.col("price").n_unique().alias("u"), pl.col("price").first().alias("f"),
                pl.col("price").count().alias("c")]
        if shape == "dynamic":
            return lf.group_by_dynamic("ts", every="1s", group_by="symbol").agg(aggs)
        return lf.group_by("symbol").agg(aggs)

    rng = random.Random(5)
    rows = [(rng.choice("AB"), rng.choice(SPECIAL), 1, from_micros(1_700_000_000 * SECOND
                                                                  + i * 37 * MS))
            for i in range(200)]
    db.execute(trades_ddl(100))
    db.create_materialized_view("v", build(db.stream("trades")))
    got = drive(db, rows, "mixed", 5, ["v"], rounds=4, settle_view="v", delay_us=DELAY_US)["v"]
    if shape == "dynamic":
        expected = run_lazy(build, real_rows(rows))
    else:
        got, expected = last_per_key(got, ["symbol"]), run_lazy(build, real_rows(rows),
                                                                 sort_by=None)
    assert expected["s"].is_nan().any()
    assert_same(got, expected)
