"""VWAP per symbol: the volume-weighted average price, over the whole day and per minute.

Two views over one trade source: a continuous aggregate (one row per symbol, updated
as trades arrive) and a windowed one (a row per symbol and minute, emitted when the
minute closes). The trades come from the package's seeded feed, as Arrow batches;
at the end the views are checked against Polars computing the same in batch.

Run: python examples/vwap.py [ROWS]
"""

from __future__ import annotations

import sys

import polars as pl
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.demo_feed import TradeFeed, symbol_names

PIPELINE = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
);
CREATE MATERIALIZED VIEW vwap AS
SELECT symbol, sum(price * qty) / sum(qty) AS vwap, sum(qty) AS volume, count(*) AS trades
FROM trades GROUP BY symbol;
CREATE MATERIALIZED VIEW vwap_1min AS
SELECT symbol, tumble(ts, INTERVAL '1' MINUTE) AS minute,
       sum(price * qty) / sum(qty) AS vwap, sum(qty) AS volume
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)
EMIT ON WINDOW CLOSE;
"""


def main(rows: int = 200_000) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Push ``rows`` trades (100 a second of event time); return the two views' rows."""
    db = lp.open()
    db.execute(PIPELINE)
    minutes = db.sink("vwap_1min").subscribe()
    db.start()

    feed = TradeFeed(symbol_names(5), seed=11, rate=100, late_fraction=0.001)
    trades = db.source("trades")
    pushed, closed = [], []
    while (done := sum(len(t) for t in pushed)) < rows:
        batch = feed.take(min(10_000, rows - done))
        trades.push_arrow(batch.to_arrow())
        pushed.append(batch)
        while (frame := minutes.poll()) is not None:  # the minutes closed so far
            print(f"{frame.height} minute bars closed, up to {frame['minute'].max()}")
            closed.append(frame)
    db.stop()  # the input ends: the last minute closes
    closed.extend(minutes)  # what came after the last poll, until the sink ends

    day = db.query("SELECT * FROM vwap ORDER BY symbol")
    minute = db.query("SELECT * FROM vwap_1min ORDER BY minute, symbol")
    print(day)
    print(minute.tail(5))

    # The same in batch: the rows the source accepted (late ones dropped), then Polars.
    everything = pl.concat([t.to_polars().drop("arrival") for t in pushed])
    on_time = everything.filter(~pl.col("late"))
    expected_day = (on_time.group_by("symbol")
                    .agg(vwap=(pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum(),
                         volume=pl.col("qty").sum(), trades=pl.len())
                    .sort("symbol"))
    expected_minute = (on_time.sort("ts").group_by_dynamic("ts", every="1m", group_by="symbol")
                       .agg(vwap=(pl.col("price") * pl.col("qty")).sum() / pl.col("qty").sum(),
                            volume=pl.col("qty").sum())
                       .rename({"ts": "minute"}).select(minute.columns).sort("minute", "symbol"))
    assert_frame_equal(day, expected_day, check_dtypes=False, rel_tol=1e-9)
    assert_frame_equal(minute, expected_minute, check_dtypes=False, rel_tol=1e-9)
    # the subscription received every minute bar the view holds
    assert_frame_equal(pl.concat(closed).sort("minute", "symbol"), minute)
    late = db.metrics()["sources"]["trades"]["late"]
    print(f"{rows:,} trades, {late} late and dropped: both views equal Polars in batch")
    return day, minute


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
