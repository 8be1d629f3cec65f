"""A synthetic, deterministic trade feed for the demo, its test and the OHLC bench.

Trade ``i`` happens at ``start + i / rate`` seconds of event time, plus a random
delay of up to ``jitter`` (so trades arrive slightly out of order), on a random
symbol whose price is a random walk. A few trades (``late_fraction``) are stamped
1 to 3 s in the past: once the watermark has moved past them they are late,
and the source drops and counts them.

The feed is a pure function of its parameters: however it is sliced by
:meth:`TradeFeed.take`, the same seed gives the same rows, and ``late`` marks
exactly the rows a source with watermark delay ``delay`` drops (a row is late
when its time is older than ``max(time of every earlier row) - delay``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import polars as pl
import pyarrow as pa

__all__ = ["SYMBOLS", "START", "TradeFeed", "Trades", "reference_bars", "symbol_names",
           "write_trades"]

START = 1_704_187_800_000_000  # 2024-01-02 09:30:00 in microseconds since the epoch
SYMBOLS = ("AAPL", "MSFT", "NVDA", "AMZN", "GOOG", "META", "TSLA", "AMD", "INTC", "ORCL")
_BLOCK = 4096  # rows drawn from the generator at a time: slicing never changes the rows


def symbol_names(spec: str | int) -> list[str]:
    """``"3"`` or ``3`` → the first 3 symbols (``S0100``-style names past the list);
    ``"AAPL,MSFT"`` → those names."""
    if isinstance(spec, int) or spec.strip().isdigit():
        count = int(spec)
        if count < 1:
            raise ValueError(f"need at least one symbol, got {spec!r}")
        return [SYMBOLS[i] if i < len(SYMBOLS) else f"S{i:04d}" for i in range(count)]
    names = [name.strip() for name in spec.split(",") if name.strip()]
    if not names or len(set(names)) != len(names):
        raise ValueError(f"expected a count or distinct comma-separated symbols, got {spec!r}")
    return names


@dataclasses.dataclass
class Trades:
    """A slice of the feed, as columns; ``late`` marks rows the source will drop."""

    names: list[str]
    code: np.ndarray  # int32 index into names
    price: np.ndarray  # float64
    qty: np.ndarray  # int64
    ts: np.ndarray  # int64 microseconds since the epoch
    late: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.ts)

    def symbols(self) -> np.ndarray:
        return np.asarray(self.names, dtype=object)[self.code]

    def rows(self) -> list[tuple[str, float, int, int]]:
        """Tuples in schema order (symbol, price, qty, ts) for ``Source.push``."""
        names = self.names
        return list(zip([names[c] for c in self.code.tolist()], self.price.tolist(),
                        self.qty.tolist(), self.ts.tolist(), strict=True))

    def to_arrow(self) -> pa.Table:
        """A table for ``Source.push_arrow`` (zero-copy for the numeric columns)."""
        return pa.table({
            "symbol": pa.DictionaryArray.from_arrays(
                pa.array(self.code, pa.int32()), pa.array(self.names)).cast(pa.string()),
            "price": pa.array(self.price),
            "qty": pa.array(self.qty),
            "ts": pa.array(self.ts, pa.timestamp("us")),
        })

    def to_polars(self) -> pl.DataFrame:
        """Every row (late ones included) with an ``arrival`` index and the ``late`` flag."""
        return pl.DataFrame({
            "symbol": pl.Series(self.symbols().tolist(), dtype=pl.String),
            "price": self.price,
            "qty": self.qty,
            "ts": pl.Series(self.ts).cast(pl.Datetime("us")),
            "late": self.late,
        }).with_row_index("arrival")

    @classmethod
    def concat(cls, parts: list[Trades], names: list[str]) -> Trades:
        if not parts:
            empty = np.empty(0, dtype=np.int64)
            return cls(names, empty.astype(np.int32), empty.astype(np.float64), empty, empty,
                       empty.astype(bool))
        if len(parts) == 1:
            return parts[0]
        return cls(names, *(np.concatenate([getattr(p, f) for p in parts])
                            for f in ("code", "price", "qty", "ts", "late")))


class TradeFeed:
    """An endless, seeded stream of trades; :meth:`take` hands out the next rows."""

    def __init__(self, symbols: list[str], *, seed: int = 0, rate: float = 1000.0,
                 jitter: dt.timedelta = dt.timedelta(milliseconds=50),
                 delay: dt.timedelta = dt.timedelta(milliseconds=100),
                 late_fraction: float = 0.002, start: int = START) -> None:
        self.names = list(symbols)
        self.rate = rate
        self.jitter_us = int(jitter / dt.timedelta(microseconds=1))
        self.delay_us = int(delay / dt.timedelta(microseconds=1))
        self.late_fraction = late_fraction
        self.start = start
        self._rng = np.random.default_rng(seed)
        self._prices = np.round(self._rng.uniform(50, 500, len(self.names)), 2)
        self._next = 0  # index of the next row to generate
        self._max_ts = np.iinfo(np.int64).min  # running max of event times so far
        self._buffer: Trades | None = None
        self._offset = 0

    def take(self, n: int) -> Trades:
        """The next ``n`` rows."""
        parts = []
        while n > 0:
            if self._buffer is None or self._offset == len(self._buffer):
                self._buffer, self._offset = self._block(), 0
            stop = min(self._offset + n, len(self._buffer))
            b, i = self._buffer, self._offset
            parts.append(Trades(self.names, b.code[i:stop], b.price[i:stop], b.qty[i:stop],
                                b.ts[i:stop], b.late[i:stop]))
            n -= stop - i
            self._offset = stop
        return Trades.concat(parts, self.names)

    def _block(self) -> Trades:
        rng, n = self._rng, _BLOCK
        index = np.arange(self._next, self._next + n, dtype=np.int64)
        self._next += n
        code = rng.integers(0, len(self.names), n, dtype=np.int32)
        steps = rng.normal(0.0, 0.05, n)
        price = np.empty(n)
        for s in range(len(self.names)):  # a random walk per symbol, in cents
            mask = code == s
            walk = self._prices[s] + np.cumsum(steps[mask])
            price[mask] = np.round(np.maximum(walk, 1.0), 2)
            if mask.any():
                self._prices[s] = price[mask][-1]
        qty = rng.integers(1, 500, n, dtype=np.int64)
        ts = self.start + (index * 1_000_000 / self.rate).astype(np.int64)
        ts += rng.integers(0, self.jitter_us + 1, n, dtype=np.int64)
        back = rng.random(n) < self.late_fraction
        ts[back] -= rng.integers(1_000_000, 3_000_000, int(back.sum()), dtype=np.int64)
        # late: older than the maximum of every earlier row minus the delay
        prior = np.maximum.accumulate(np.concatenate([[self._max_ts], ts]))[:-1]
        late = ts < np.where(prior == np.iinfo(np.int64).min, prior, prior - self.delay_us)
        self._max_ts = int(max(self._max_ts, ts.max()))
        return Trades(self.names, code, price, qty, ts, late)


def reference_bars(trades: pl.DataFrame, every: str) -> pl.DataFrame:
    """The OHLC bars Polars computes in batch on ``trades`` (late rows dropped):
    what the ``ohlc`` view must emit. ``every`` is a Polars duration (``"1s"``).

    ``first``/``last`` follow event time, then arrival (docs/sql.md, "Aggregates"): rows are sorted
    by ``ts`` and arrival before ``group_by_dynamic``.
    """
    if "late" in trades.columns:
        trades = trades.filter(~pl.col("late"))
    order = ["symbol", "ts", "arrival"] if "arrival" in trades.columns else ["symbol", "ts"]
    return (
        trades.sort(order, maintain_order=True)
        .group_by_dynamic("ts", every=every, group_by="symbol", include_boundaries=True)
        .agg(pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
             pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
             pl.col("qty").sum().alias("volume"), pl.len().alias("trades"))
        .select("symbol", pl.col("_lower_boundary").alias("window_start"),
                pl.col("_upper_boundary").alias("window_end"),
                "open", "high", "low", "close", "volume", "trades")
        .sort("window_start", "symbol")
    )


def write_trades(path: str, rows: int, *, symbols: int | str = 4, seed: int = 0,
                 rate: float = 1000.0) -> pl.DataFrame:
    """Write the feed's first ``rows`` trades (late ones included, in arrival
    order) to ``path`` as Parquet, the input of a backtest; return them.

    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "trades.parquet"
    >>> write_trades(str(path), 5, symbols="AAPL").columns
    ['symbol', 'price', 'qty', 'ts']
    >>> pl.read_parquet(path).height
    5
    """
    trades = TradeFeed(symbol_names(symbols), seed=seed, rate=rate).take(rows).to_polars()
    trades = trades.drop("arrival", "late")
    trades.write_parquet(path)
    return trades
