"""Every join kind, in SQL and as LazyFrames, against Polars in batch on the rows
each source kept: rows out of order within each source's delay, late rows on
either side, arrival interleaved across the two sources, every push method,
ties in event time, keys on one side only, one and two workers."""

from __future__ import annotations

import polars as pl
import pytest
from join_oracle import QUOTES_SCHEMA, by_time, make_streams, micros, run, two_sources_ddl
from oracle import (
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    real_rows,
    sql_agg,
    stable_seed,
    tumble,
)

import laminar_polars as lp
from laminar_polars.engine.ops import interval

TRADES_DELAY, QUOTES_DELAY = 100 * MS, 50 * MS

SQL_VIEWS = """
CREATE MATERIALIZED VIEW asof AS
    SELECT t.symbol, t.price, t.qty, t.ts, q.bid, q.size, q.ts AS quote_ts
    FROM trades t ASOF JOIN quotes q ON t.symbol = q.symbol AND t.ts >= q.ts;
CREATE MATERIALIZED VIEW asof_left AS
    SELECT t.symbol, t.price, t.ts, q.bid, q.ts AS quote_ts
    FROM trades t ASOF LEFT JOIN quotes q
      ON t.symbol = q.symbol AND t.ts >= q.ts AND t.ts - q.ts <= INTERVAL '300' MILLISECOND;
CREATE MATERIALIZED VIEW asof_strict AS
    SELECT t.symbol, t.price, t.ts, q.bid, q.ts AS quote_ts
    FROM trades AS t ASOF JOIN quotes AS q ON q.symbol = t.symbol AND q.ts < t.ts;
CREATE MATERIALIZED VIEW interval_join AS
    SELECT t.symbol, t.price, t.ts, q.bid, q.ts AS quote_ts
    FROM trades t JOIN quotes q ON t.symbol = q.symbol
      AND q.ts BETWEEN t.ts - INTERVAL '200' MILLISECOND AND t.ts + INTERVAL '100' MILLISECOND;
CREATE MATERIALIZED VIEW interval_left AS
    SELECT t.symbol, t.price, t.ts, q.bid, q.ts AS quote_ts
    FROM trades t LEFT JOIN quotes q ON t.symbol = q.symbol
      AND q.ts > t.ts - INTERVAL '50' MILLISECOND AND q.ts < t.ts + INTERVAL '20' MILLISECOND;
CREATE MATERIALIZED VIEW window_join AS
    SELECT t.symbol, t.price, t.ts, q.bid FROM trades t JOIN quotes q
      ON t.symbol = q.symbol AND t.ts = q.ts;
CREATE MATERIALIZED VIEW window_left AS
    SELECT t.symbol, t.price, t.ts, q.bid FROM trades t LEFT JOIN quotes q
      ON t.symbol = q.symbol AND q.ts = t.ts;
CREATE MATERIALIZED VIEW equi AS
    SELECT t.symbol, t.price, t.qty, q.bid FROM trades t JOIN quotes q
      ON t.symbol = q.symbol AND t.qty = q.size;
CREATE MATERIALIZED VIEW lookup AS
    SELECT t.symbol, t.price, t.ts, r.name FROM trades t LEFT JOIN refs r ON t.symbol = r.symbol;
CREATE MATERIALIZED VIEW lookup_inner AS
    SELECT t.*, r.floor FROM trades t JOIN refs r ON t.symbol = r.symbol AND t.price > r.floor;
CREATE MATERIALIZED VIEW unioned AS
    SELECT symbol, price, ts FROM trades UNION ALL SELECT symbol, bid, ts FROM quotes;
CREATE MATERIALIZED VIEW per_second AS
    SELECT t.symbol, tumble(t.ts, INTERVAL '1' SECOND) AS ws, count(*) AS n, sum(q.bid) AS bids
    FROM trades t JOIN quotes q ON t.symbol = q.symbol
      AND q.ts BETWEEN t.ts - INTERVAL '200' MILLISECOND AND t.ts + INTERVAL '100' MILLISECOND
    GROUP BY t.symbol, tumble(t.ts, INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW edges AS
    SELECT symbol, ts, price - bid AS edge FROM asof WHERE bid IS NOT NULL;
CREATE MATERIALIZED VIEW asof_counts AS
    SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS ws, count(*) AS n
    FROM (SELECT t.symbol, t.ts FROM trades t ASOF JOIN quotes q
          ON t.symbol = q.symbol AND t.ts >= q.ts) AS j
    GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
"""
SQL_NAMES = ["asof", "asof_left", "asof_strict", "interval_join", "interval_left",
             "window_join", "window_left", "equi", "lookup", "lookup_inner", "unioned",
             "per_second", "edges", "asof_counts"]

REFS = pl.DataFrame({"symbol": ["AAPL", "GOOG", "IBM"], "name": ["Apple", "Alphabet", "IBM"],
                     "floor": [99.0, 101.0, 0.0]})


def _where(t: pl.LazyFrame, q: pl.LazyFrame) -> pl.LazyFrame:
    return t.join_where(q, pl.col("symbol") == pl.col("symbol_right"),
                        pl.col("ts_right") >= pl.col("ts") - micros(200 * MS),
                        pl.col("ts_right") <= pl.col("ts") + micros(100 * MS))


def _per_second(t: pl.LazyFrame, q: pl.LazyFrame, batch: bool = False) -> pl.LazyFrame:
    """Windows over an interval join (in batch, Polars wants the rows sorted first;
    the view cannot sort, and needs not)."""
    pairs = _where(t, q)
    pairs = pairs.sort("ts") if batch else pairs
    return pairs.group_by_dynamic("ts", every="1s", group_by="symbol").agg(pl.len().alias("n"))


LAZY_VIEWS = {
    "lazy_asof": lambda t, q: t.join_asof(q, on="ts", by="symbol", check_sortedness=False),
    "lazy_asof_tolerance": lambda t, q: t.join_asof(q, on="ts", by="symbol", tolerance="300ms",
                                                    allow_exact_matches=False,
                                                    check_sortedness=False),
    "lazy_asof_global": lambda t, q: t.select("price", "ts").join_asof(
        q.select("bid", "ts"), on="ts"),
    "lazy_where": _where,
    "lazy_where_no_keys": lambda t, q: t.join_where(
        q, pl.col("ts_right").is_between(pl.col("ts") - micros(3 * MS), pl.col("ts"))),
    "lazy_window": lambda t, q: t.join(q, on=["symbol", "ts"], how="left"),
    "lazy_equi": lambda t, q: t.join(q, left_on=["symbol", "qty"], right_on=["symbol", "size"]),
    "lazy_static": lambda t, q: t.join(REFS.lazy(), on="symbol", how="left"),
    "lazy_concat": lambda t, q: pl.concat(
        [t.select("symbol", "price", "ts"), q.select("symbol", pl.col("bid").alias("price"),
                                                      "ts")]),
    "lazy_per_second": _per_second,
}


def _open(workers: int, delays: tuple[int, int] = (TRADES_DELAY, QUOTES_DELAY)
          ) -> lp.LaminarDB:
    db = lp.open(lp.Config(workers=workers))
    db.execute(two_sources_ddl(*delays))
    db.register_table("refs", REFS)
    db.execute(SQL_VIEWS)
    trades, quotes = db.stream("trades"), db.stream("quotes")
    for name, build in LAZY_VIEWS.items():
        db.create_materialized_view(name, build(trades, quotes))
    return db


# -- the batch oracle -----------------------------------------------------------------

def _quotes_as(q: pl.DataFrame) -> pl.DataFrame:
    """Quotes with the columns SQL names them by after the join."""
    return q.select(pl.col("symbol").alias("q_symbol"), "bid", "size",
                    pl.col("ts").alias("quote_ts"))


def _asof(t: pl.DataFrame, q: pl.DataFrame, *, tolerance: int | None = None,
          exact: bool = True, keep: bool = False) -> pl.DataFrame:
    right = by_time(_quotes_as(q).rename({"quote_ts": "ts"})).with_columns(
        quote_ts=pl.col("ts"), m=pl.lit(True))
    out = by_time(t).join_asof(right, on="ts", by_left="symbol", by_right="q_symbol",
                               tolerance=None if tolerance is None else micros(tolerance),
                               allow_exact_matches=exact, check_sortedness=False)
    return out if keep else out.filter(pl.col("m"))


def _interval(t: pl.DataFrame, q: pl.DataFrame, low: int, high: int,
              strict: bool = False) -> pl.DataFrame:
    quote = pl.col("quote_ts")
    after, before = pl.col("ts") + micros(low), pl.col("ts") + micros(high)
    bounds = (quote > after, quote < before) if strict else (quote >= after, quote <= before)
    return t.join_where(_quotes_as(q), pl.col("symbol") == pl.col("q_symbol"), *bounds)


def _with_unmatched(pairs: pl.DataFrame, t: pl.DataFrame) -> pl.DataFrame:
    lonely = t.join(pairs.select("__arrival").unique(), on="__arrival", how="anti")
    return pl.concat([pairs, lonely], how="diagonal_relaxed")


def sql_expected(t: pl.DataFrame, q: pl.DataFrame) -> dict[str, pl.DataFrame]:
    cols = ["symbol", "price", "ts", "bid", "quote_ts"]
    asof = _asof(t, q)
    pairs = _interval(t, q, -200 * MS, 100 * MS)
    window = t.join(q.select("symbol", "bid", "ts"), on=["symbol", "ts"])
    refs = REFS.lazy()
    lookup_inner = t.join(REFS.select("symbol", "floor"), on="symbol").filter(
        pl.col("price") > pl.col("floor"))
    per_second = tumble(pairs, SECOND).sort(["ts", "__arrival"]).group_by(
        ["symbol", "window_start"]).agg(n=pl.len(), bids=sql_agg("sum", "bid"))
    asof_counts = tumble(asof, SECOND).group_by(["symbol", "window_start"]).agg(n=pl.len())
    return {
        "asof": asof.select("symbol", "price", "qty", "ts", "bid", "size", "quote_ts"),
        "asof_left": _asof(t, q, tolerance=300 * MS, keep=True).select(cols),
        "asof_strict": _asof(t, q, exact=False).select(cols),
        "interval_join": pairs.select(cols),
        "interval_left": _with_unmatched(_interval(t, q, -50 * MS, 20 * MS, strict=True),
                                         t).select(cols),
        "window_join": window.select("symbol", "price", "ts", "bid"),
        "window_left": t.join(q.select("symbol", "bid", "ts"), on=["symbol", "ts"],
                              how="left").select("symbol", "price", "ts", "bid"),
        "equi": t.join(q, left_on=["symbol", "qty"], right_on=["symbol", "size"]).select(
            "symbol", "price", "qty", "bid"),
        "lookup": t.lazy().join(refs, on="symbol", how="left").select(
            "symbol", "price", "ts", "name").collect(),
        "lookup_inner": lookup_inner.select("symbol", "price", "qty", "ts", "floor"),
        "unioned": pl.concat([t.select("symbol", "price", "ts"),
                              q.select("symbol", pl.col("bid").alias("price"), "ts")]),
        "per_second": per_second.select("symbol", pl.col("window_start").alias("ws"), "n",
                                        "bids"),
        "edges": asof.filter(pl.col("bid").is_not_null()).select(
            "symbol", "ts", (pl.col("price") - pl.col("bid")).alias("edge")),
        "asof_counts": asof_counts.select("symbol", pl.col("window_start").alias("ws"), "n"),
    }


def lazy_expected(t: pl.DataFrame, q: pl.DataFrame) -> dict[str, pl.DataFrame]:
    trades = by_time(real_rows(t.drop("__arrival").rows())).lazy()
    quotes = by_time(real_rows(q.drop("__arrival").rows(), QUOTES_SCHEMA)).lazy()
    out = {name: build(trades, quotes).collect() for name, build in LAZY_VIEWS.items()
           if build is not _per_second}
    return {**out, "lazy_per_second": _per_second(trades, quotes, batch=True).collect()}


def check(streams, got: dict[str, pl.DataFrame]) -> None:
    t, q = streams.frames()
    expected = {**sql_expected(t, q), **lazy_expected(t, q)}
    for name, want in expected.items():
        try:
            assert_same(got[name], want)
        except AssertionError as error:
            raise AssertionError(f"view {name!r}: {error}") from None


# Every scenario with every push method once; one and two workers, fine and coarse
# (10 ms: many equal times) event times alternating.
CASES = [(kind, mode, 1 + (i % 2), (None, 10 * MS)[(i // 2) % 2])
         for i, (kind, mode) in enumerate((k, m) for k in SCENARIOS for m in MODES)]


@pytest.mark.parametrize(("kind", "mode", "workers", "coarse"), CASES)
def test_joins_match_polars_in_batch(monkeypatch, kind, mode, workers, coarse):
    seed = stable_seed(kind, mode, workers, coarse)
    if seed % 2:  # interval joins match large batches slice by slice: make them all large
        monkeypatch.setattr(interval, "SLICE_ROWS", 1 + seed % 5)
    streams = make_streams(160, seed, kind, trades_delay_us=TRADES_DELAY,
                           quotes_delay_us=QUOTES_DELAY, coarse_us=coarse)
    db = _open(workers)
    got = run(db, streams, mode, seed, [*SQL_NAMES, *LAZY_VIEWS])
    check(streams, got)
