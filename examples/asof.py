"""Trades ASOF quotes: each trade with the latest quote of its symbol, if it is fresh.

Two sources, trades and quotes, each with its own watermark. The view `priced`
joins every trade with its symbol's latest quote at or before the trade, and only
if that quote is at most 500 ms older (``ASOF LEFT JOIN ... AND t.ts - q.ts <=
INTERVAL``): a trade without a fresh quote keeps nulls. A trade goes out once the
quotes' watermark has passed its time, when no quote still to come can be its
match. `coverage` counts per symbol how many trades had no fresh quote (an aggregate
with FILTER over the join). Both feeds arrive slightly out of order, in
interleaved Arrow batches; at the end the views are checked against Polars'
``join_asof`` in batch over the rows the sources accepted.

Run: python examples/asof.py [TRADES]
"""

from __future__ import annotations

import sys

import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.demo_feed import TradeFeed, Trades, symbol_names

PIPELINE = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
);
CREATE SOURCE quotes (
    symbol VARCHAR NOT NULL, bid DOUBLE, ask DOUBLE, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
);
CREATE MATERIALIZED VIEW priced AS
SELECT t.symbol, t.ts, t.price, t.qty, q.bid, q.ask, q.ts AS quoted_at,
       round(t.price - (q.bid + q.ask) / 2, 2) AS vs_mid
FROM trades t ASOF LEFT JOIN quotes q
  ON t.symbol = q.symbol AND t.ts >= q.ts AND t.ts - q.ts <= INTERVAL '500' MILLISECOND;
CREATE MATERIALIZED VIEW coverage AS
SELECT symbol, count(*) AS trades, count(*) FILTER (WHERE bid IS NULL) AS unquoted
FROM priced GROUP BY symbol;
"""
SPREAD = 0.02


def quotes_table(quotes: Trades) -> pa.Table:
    """The quote feed's rows as quotes: its price is the mid, the spread fixed."""
    return pa.table({"symbol": pa.array(quotes.symbols().tolist(), pa.string()),
                     "bid": pa.array(quotes.price - SPREAD / 2),
                     "ask": pa.array(quotes.price + SPREAD / 2),
                     "ts": pa.array(quotes.ts, pa.timestamp("us"))})


def main(rows: int = 100_000) -> pl.DataFrame:
    """Push ``rows`` trades (1,000 a second) and the quotes of the same time (2.5 a
    second per symbol, on average); return the joined rows."""
    symbols = symbol_names(4)
    db = lp.open()
    db.execute(PIPELINE)
    db.start()
    trade_feed = TradeFeed(symbols, seed=5, rate=1000, late_fraction=0.001)
    quote_feed = TradeFeed(symbols, seed=6, rate=10, late_fraction=0.0)
    pushed: list[Trades] = []
    quoted: list[Trades] = []
    while (done := sum(len(t) for t in pushed)) < rows:
        # each round: 5 s of quotes, then 5 s of trades, so both watermarks move on
        quoted.append(quote_feed.take(50))
        db.source("quotes").push_arrow(quotes_table(quoted[-1]))
        pushed.append(trade_feed.take(min(5_000, rows - done)))
        db.source("trades").push_arrow(pushed[-1].to_arrow())
    db.stop()  # both inputs end: the trades still waiting for quotes go out
    join = db.metrics()["views"]["priced"]["join"]

    priced = db.query("SELECT * FROM priced ORDER BY ts, symbol")
    coverage = db.query("SELECT * FROM coverage ORDER BY symbol")
    print(priced.tail(5))
    print(coverage)
    print(f"the join took {join['left']['rows_in']:,} trades and {join['right']['rows_in']:,} "
          f"quotes, and freed {join['right']['freed']:,} quotes no trade could take any more")

    # The same in batch: the rows each source accepted, joined by Polars.
    trades = pl.concat([t.to_polars() for t in pushed]).filter(~pl.col("late"))
    quotes = pl.from_arrow(pa.concat_tables([quotes_table(q) for q in quoted]))
    assert isinstance(quotes, pl.DataFrame)
    expected = (trades.drop("arrival", "late").sort("ts", maintain_order=True)
                .join_asof(quotes.with_columns(quoted_at=pl.col("ts"))
                           .sort("ts", maintain_order=True),
                           on="ts", by="symbol", strategy="backward", tolerance="500ms",
                           check_sortedness=False)  # sorted by ts; Polars cannot check by-groups
                .drop("ts_right", strict=False)
                .with_columns(vs_mid=(pl.col("price") - (pl.col("bid") + pl.col("ask")) / 2)
                              .round(2))
                .select(priced.columns).sort("ts", "symbol"))
    assert_frame_equal(priced, expected, check_dtypes=False, rel_tol=1e-9)
    unquoted = expected.group_by("symbol").agg(trades=pl.len(),
                                               unquoted=pl.col("bid").is_null().sum())
    assert_frame_equal(coverage, unquoted.sort("symbol"), check_dtypes=False)
    assert 0 < coverage["unquoted"].sum() < len(expected)  # some quotes were too stale
    print(f"{len(expected):,} trades priced, {coverage['unquoted'].sum():,} without a fresh "
          "quote: the views equal Polars' join_asof in batch")
    return priced


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
