-- The demo's pipeline: one-second OHLC bars per symbol, a bar emitted when its second
-- closes (the watermark, 100 ms behind the newest trade, passes its end).
-- Live: laminar-polars demo. Over a file: laminar-polars run examples/ohlc.sql --input trades=PATH
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
);

CREATE MATERIALIZED VIEW ohlc AS
SELECT symbol,
       tumble(ts, INTERVAL '1' SECOND)     AS window_start,
       tumble_end(ts, INTERVAL '1' SECOND) AS window_end,
       first_value(price) AS open, max(price) AS high,
       min(price) AS low, last_value(price) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
EMIT ON WINDOW CLOSE;
