"""Randomized: rows (keys, values with nulls, timestamps with ties), arrival
order (within and beyond the delay), batch boundaries, watermark delay.

One database per example holds several views over the same stream; each must
equal the oracle on the rows that were not late.
"""

from __future__ import annotations

import random

import polars as pl
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from oracle import (
    ARRIVAL,
    MODES,
    MS,
    SECOND,
    Mark,
    assert_same,
    at,
    drive,
    frame,
    from_micros,
    hop,
    last_per_key,
    real_rows,
    run_lazy,
    sessions,
    split_late,
    sql_agg,
    to_micros,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

SETTINGS = settings(max_examples=30, deadline=None, database=None,
                    phases=[Phase.explicit, Phase.generate, Phase.shrink],
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

prices = st.one_of(st.none(), st.integers(-10_000, 10_000).map(lambda c: c / 100))
quantities = st.one_of(st.none(), st.integers(-5, 500))
steps_us = st.one_of(st.just(0), st.integers(0, 400).map(lambda m: m * MS),
                     st.integers(0, 2_000_000), st.sampled_from([1, 999, 1000]))


@st.composite
def streams(draw):
    """(events, delay_us, feeding mode, chunking seed, start engine first, rounds)."""
    delay_us = draw(st.sampled_from([0, 1, 50 * MS, 100 * MS, 1000 * MS]))
    n = draw(st.integers(0, 120))
    t = draw(st.integers(0, 10 * 1000 * MS))
    rows = []
    for _ in range(n):
        t += draw(steps_us)
        rows.append((draw(st.sampled_from(["A", "B", "C"])), draw(prices), draw(quantities),
                     at(t)))
    # arrival order: sort by ts + jitter; jitter up to the delay keeps every row,
    # beyond it makes some late
    spread = draw(st.sampled_from([0, delay_us, 3 * delay_us + 200 * MS]))
    seed = draw(st.integers(0, 2**16))
    rng = random.Random(seed)
    keyed = sorted((to_micros(r[3]) + rng.randint(0, spread), i) for i, r in enumerate(rows))
    events: list = [rows[i] for _, i in keyed]
    # now and then an explicit watermark, up to 2 s behind the newest row
    for _ in range(draw(st.integers(0, 3)) if events else 0):
        pos = draw(st.integers(1, len(events)))
        newest = max(to_micros(e[3]) for e in events[:pos] if not isinstance(e, Mark))
        events.insert(pos, Mark(from_micros(newest - draw(st.integers(0, 2 * SECOND)))))
    return (events, delay_us, draw(st.sampled_from(MODES)), seed, draw(st.booleans()),
            draw(st.integers(1, 4)))


SQL_AGGS = """count(*) AS n, count(price) AS n_price, sum(qty) AS volume,
       sum(price) AS turnover, min(price) AS low, max(qty) AS max_qty,
       avg(price) AS avg_price, first_value(price) AS open, last_value(qty) AS last_qty,
       count(DISTINCT qty) AS n_qty"""
ORACLE_AGGS = {
    "n": sql_agg("count_star"), "n_price": sql_agg("count", "price"),
    "volume": sql_agg("sum", "qty"), "turnover": sql_agg("sum", "price"),
    "low": sql_agg("min", "price"), "max_qty": sql_agg("max", "qty"),
    "avg_price": sql_agg("avg", "price"), "open": sql_agg("first_value", "price"),
    "last_qty": sql_agg("last_value", "qty"), "n_qty": sql_agg("count_distinct", "qty"),
}

# A tumbling and a hopping view over the same aggregates, and their oracle.
WINDOW_VIEWS = """
CREATE MATERIALIZED VIEW tumbling AS
SELECT symbol, tumble(ts, INTERVAL '250' MILLISECOND) AS window_start, {aggs}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '250' MILLISECOND);
CREATE MATERIALIZED VIEW hopping AS
SELECT symbol, hop(ts, INTERVAL '100' MILLISECOND, INTERVAL '300' MILLISECOND) AS window_start,
       {aggs}
FROM trades GROUP BY symbol, hop(ts, INTERVAL '100' MILLISECOND, INTERVAL '300' MILLISECOND);"""


def assert_window_views(out: dict, rows: pl.DataFrame, aggs: dict) -> None:
    window = ["window_start"]
    assert_same(out["tumbling"], window_agg(tumble(rows, 250 * MS), ["symbol"], aggs,
                                            window_cols=window), check_dtypes=False)
    assert_same(out["hopping"], window_agg(hop(rows, 100 * MS, 300 * MS), ["symbol"], aggs,
                                           window_cols=window), check_dtypes=False)


@SETTINGS
@given(streams())
def test_sql_views_match_oracle(stream):
    events, delay_us, mode, seed, start, rounds = stream
    kept, late = split_late(events, delay_us)
    rows = frame(kept)
    with lp.open() as db:
        db.execute(trades_ddl(delay_us=delay_us))
        db.execute(WINDOW_VIEWS.format(aggs=SQL_AGGS) + f"""
CREATE MATERIALIZED VIEW updating AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, {SQL_AGGS}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND) EMIT ON UPDATE;
CREATE MATERIALIZED VIEW totals AS
SELECT symbol, {SQL_AGGS} FROM trades GROUP BY symbol;
CREATE MATERIALIZED VIEW filtered AS
SELECT symbol, qty * 2 AS q2, CASE WHEN price > 0 THEN 'up' ELSE 'down' END AS side, ts
FROM trades WHERE qty IS NOT NULL AND qty % 2 = 0""")
        out = drive(db, events, mode, seed, ["tumbling", "hopping", "updating", "totals",
                                             "filtered"], start=start,
                    rounds=rounds, settle_view="tumbling", delay_us=delay_us)
        assert db.metrics()["sources"]["trades"]["late"] == len(late)

    assert_window_views(out, rows, ORACLE_AGGS)
    window = ["window_start"]
    assert_same(last_per_key(out["updating"], ["symbol", *window]),
                window_agg(tumble(rows, 1000 * MS), ["symbol"], ORACLE_AGGS,
                           window_cols=window), check_dtypes=False)
    totals = rows.sort("ts", ARRIVAL).group_by("symbol", maintain_order=True).agg(**ORACLE_AGGS)
    assert_same(last_per_key(out["totals"], ["symbol"]), totals, check_dtypes=False)
    filtered = (rows.filter(pl.col("qty").is_not_null() & (pl.col("qty") % 2 == 0))
                .select("symbol", q2=pl.col("qty") * 2,
                        side=pl.when(pl.col("price") > 0).then(pl.lit("up"))
                        .otherwise(pl.lit("down")), ts="ts"))
    assert_same(out["filtered"], filtered, check_dtypes=False)


@SETTINGS
@given(streams())
def test_sql_session_view_matches_oracle(stream):
    events, delay_us, mode, seed, start, rounds = stream
    kept, _late = split_late(events, delay_us)
    rows = frame(kept)
    with lp.open() as db:
        db.execute(trades_ddl(delay_us=delay_us))
        db.execute(f"""
CREATE MATERIALIZED VIEW sessions AS
SELECT symbol, session(ts, INTERVAL '200' MILLISECOND) AS session_start,
       session_end(ts, INTERVAL '200' MILLISECOND) AS session_end, {SQL_AGGS}
FROM trades GROUP BY symbol, session(ts, INTERVAL '200' MILLISECOND)""")
        out = drive(db, events, mode, seed, ["sessions"], start=start, rounds=rounds,
                    settle_view="sessions", delay_us=delay_us)
    expected = window_agg(sessions(rows, ["symbol"], 200 * MS), ["symbol"], {
        "session_start": pl.col("ts").min(),
        "session_end": pl.col("ts").max() + pl.duration(milliseconds=200),
        **ORACLE_AGGS}, window_cols=["__session"]).drop("__session")
    assert_same(out["sessions"], expected, check_dtypes=False)


def lazy_views(lf: pl.LazyFrame) -> dict[str, pl.LazyFrame]:
    aggs = [pl.len().alias("n"), pl.col("qty").sum().alias("volume"),
            pl.col("price").first().alias("open"), pl.col("price").last().alias("close"),
            pl.col("price").mean().alias("avg"), pl.col("qty").n_unique().alias("n_qty"),
            pl.col("qty").max().alias("max_qty")]
    return {
        "dyn_tumble": lf.group_by_dynamic("ts", every="250ms", group_by="symbol").agg(aggs),
        "dyn_hop": lf.group_by_dynamic("ts", every="100ms", period="300ms", offset="30ms",
                                       group_by="symbol").agg(aggs),
        "grouped": lf.filter(pl.col("price").is_not_null()).group_by("symbol").agg(aggs),
    }


@SETTINGS
@given(streams())
def test_lazyframe_views_match_polars(stream):
    events, delay_us, mode, seed, start, rounds = stream
    kept, _late = split_late(events, delay_us)
    with lp.open() as db:
        db.execute(trades_ddl(delay_us=delay_us))
        for name, view in lazy_views(db.stream("trades")).items():
            db.create_materialized_view(name, view)
        out = drive(db, events, mode, seed, ["dyn_tumble", "dyn_hop", "grouped"], start=start,
                    rounds=rounds, settle_view="dyn_tumble", delay_us=delay_us)
    data = real_rows(kept)
    for name in ("dyn_tumble", "dyn_hop"):
        expected = run_lazy(lambda lf, name=name: lazy_views(lf)[name], data)
        assert_same(out[name], expected)
    expected = run_lazy(lambda lf: lazy_views(lf)["grouped"], data, sort_by=None)
    assert_same(last_per_key(out["grouped"], ["symbol"]), expected)


@st.composite
def dynamic_windows(draw):
    """group_by_dynamic every / period / offset in ms: tumbling, hopping, with gaps,
    offsets of either sign and larger than ``every``."""
    every = draw(st.sampled_from([50, 100, 250, 1000]))
    period = draw(st.sampled_from([every, 2 * every, every * 3 // 2, every // 2, 3 * every]))
    offset = draw(st.sampled_from([0, 30, -30, every + 20, -every - 20]))
    return f"{every}ms", f"{period}ms", f"{offset}ms"


@SETTINGS
@given(streams(), dynamic_windows())
def test_lazyframe_group_by_dynamic_windows_match_polars(stream, window):
    events, delay_us, mode, seed, start, rounds = stream
    every, period, offset = window
    kept, _ = split_late(events, delay_us)

    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every=every, period=period, offset=offset,
                                   group_by="symbol").agg(
            pl.len().alias("n"), pl.col("qty").sum().alias("volume"),
            pl.col("price").first().alias("open"), pl.col("qty").last().alias("last_qty"))

    with lp.open() as db:
        db.execute(trades_ddl(delay_us=delay_us))
        db.create_materialized_view("v", build(db.stream("trades")))
        out = drive(db, events, mode, seed, ["v"], start=start, rounds=rounds,
                    settle_view="v", delay_us=delay_us)
    assert_same(out["v"], run_lazy(build, real_rows(kept)))


FOLDABLE_AGGS = """count(*) AS n, sum(qty) AS volume, min(price) AS low, max(qty) AS max_qty,
       avg(price) AS avg_price, first_value(price) AS open, last_value(qty) AS last_qty"""
FOLDABLE_ORACLE = {name: ORACLE_AGGS[name] for name in
                   ("n", "volume", "low", "max_qty", "avg_price", "open", "last_qty")}


@SETTINGS
@given(streams(), st.sampled_from([1, 2, 3, 8, 64, 4096]), st.sampled_from([1, 5, 1 << 16]))
def test_window_views_match_oracle_whenever_rows_are_merged(stream, absorb_rows, cap):
    """Views without distinct counts, whose closing windows can fold pending rows
    in, under random merge thresholds: when rows are merged never changes what."""
    from laminar_polars.engine.ops import grid

    events, delay_us, mode, seed, start, rounds = stream
    kept, _late = split_late(events, delay_us)
    rows = frame(kept)
    saved = grid.ABSORB_ROWS, grid.PENDING_CAP
    grid.ABSORB_ROWS, grid.PENDING_CAP = absorb_rows, cap
    try:
        with lp.open() as db:
            db.execute(trades_ddl(delay_us=delay_us))
            db.execute(WINDOW_VIEWS.format(aggs=FOLDABLE_AGGS))
            out = drive(db, events, mode, seed, ["tumbling", "hopping"], start=start,
                        rounds=rounds, settle_view="tumbling", delay_us=delay_us)
    finally:
        grid.ABSORB_ROWS, grid.PENDING_CAP = saved
    assert_window_views(out, rows, FOLDABLE_ORACLE)
