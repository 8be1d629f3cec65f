"""Quickstart: a source, a sink, a subscriber; rows and an Arrow batch in, frames out.

Run: python examples/quickstart.py
"""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl

import laminar_polars as lp


def main() -> None:
    db = lp.open()
    db.execute("""
        CREATE SOURCE trades (
            symbol VARCHAR NOT NULL,
            price  DOUBLE,
            qty    BIGINT,
            ts     TIMESTAMP NOT NULL,
            WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
        ) WITH (buffer_size = 4096, backpressure = 'block', wait_strategy = 'park');
        CREATE SINK raw FROM trades;
    """)
    print(db.execute("DESCRIBE trades"))

    subscription = db.sink("raw").subscribe()
    received: list[pl.DataFrame] = []
    reader = threading.Thread(target=lambda: received.extend(subscription))
    reader.start()
    db.start()

    trades = db.source("trades")
    t0 = dt.datetime(2024, 1, 2, 9, 30)
    for i in range(1_000):
        symbol = "AAPL" if i % 2 else "MSFT"
        trades.push((symbol, 100.0 + i / 10, i, t0 + dt.timedelta(milliseconds=i)))
    # A whole Arrow batch (here a Polars frame) is taken without copying its numbers.
    batch = pl.DataFrame({
        "symbol": ["NVDA"] * 3, "price": [500.0, 501.0, 502.0], "qty": [5, 6, 7],
        "ts": [t0 + dt.timedelta(seconds=2, milliseconds=i) for i in range(3)],
    })
    trades.push_arrow(batch)
    trades.push(("LATE", 1.0, 1, t0))  # older than the watermark: dropped, counted

    db.stop()  # drains everything, then ends the subscription
    reader.join()
    frame = pl.concat(received)
    print(frame.group_by("symbol").agg(pl.len(), pl.col("price").mean()).sort("symbol"))
    print({k: v for k, v in db.metrics()["sources"]["trades"].items()})
    assert frame.height == 1_003


if __name__ == "__main__":
    main()
