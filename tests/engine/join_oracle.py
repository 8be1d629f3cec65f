"""Two-source oracle for joins: trades and quotes, each with its own watermark.

Builds both event streams (out of order within each source's delay, late rows
mixed in per source), interleaves their arrival at random, feeds them through
the engine (every push method, chunks of one source at a time), and hands the
rows each source kept (its own late rule, `oracle.split_late`) to Polars in
batch: the join computed there is what the view must hold.

Symbols overlap only in part (AAPL and MSFT on both sides, GOOG only in
trades, TSLA only in quotes), event times tie within and across the sources
(``coarse`` truncates them to 10 ms so that equal times are common, for
window joins).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from collections.abc import Sequence

import polars as pl
import pyarrow as pa
from oracle import (
    ARRIVAL,
    Event,
    Row,
    feed,
    frame,
    from_micros,
    gen_trades,
    interval,
    read_all,
    scenario,
    split_late,
    to_micros,
    trades_ddl,
)

import laminar_polars as lp
from laminar_polars.engine.operator import Delta

QUOTES_SCHEMA = pl.Schema({"symbol": pl.String, "bid": pl.Float64, "size": pl.Int64,
                           "ts": pl.Datetime("us")})
QUOTES_ARROW = pa.schema({"symbol": pa.string(), "bid": pa.float64(), "size": pa.int64(),
                          "ts": pa.timestamp("us")})
TRADE_SYMBOLS = ("AAPL", "MSFT", "GOOG")
QUOTE_SYMBOLS = ("AAPL", "MSFT", "TSLA")


def quotes_ddl(delay_us: int, name: str = "quotes") -> str:
    return f"""
CREATE SOURCE {name} (
    symbol VARCHAR NOT NULL,
    bid    DOUBLE,
    size   BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - {interval(delay_us)}
)"""


def two_sources_ddl(trades_delay_us: int, quotes_delay_us: int) -> str:
    return trades_ddl(delay_us=trades_delay_us) + ";" + quotes_ddl(quotes_delay_us)


def _coarse(rows: list[Row], step_us: int) -> list[Row]:
    return [(*r[:3], from_micros(to_micros(r[3]) // step_us * step_us)) for r in rows]


@dataclasses.dataclass(frozen=True)
class Streams:
    """Both sources' events, their arrival interleaving, and the kept rows."""

    trades: list[Event]
    quotes: list[Event]
    order: list[str]  # per arrival, 'trades' or 'quotes'
    trades_delay_us: int
    quotes_delay_us: int

    @property
    def kept_trades(self) -> list[Row]:
        return split_late(self.trades, self.trades_delay_us)[0]

    @property
    def kept_quotes(self) -> list[Row]:
        return split_late(self.quotes, self.quotes_delay_us)[0]

    def frames(self) -> tuple[pl.DataFrame, pl.DataFrame]:
        """The kept rows as frames in arrival order, with ``__arrival``."""
        return frame(self.kept_trades), frame(self.kept_quotes, QUOTES_SCHEMA)

    def runs(self) -> list[tuple[str, list[Event]]]:
        """The arrival order as runs of one source's consecutive events."""
        position = {"trades": 0, "quotes": 0}
        events = {"trades": self.trades, "quotes": self.quotes}
        out: list[tuple[str, list[Event]]] = []
        for name in self.order:
            event = events[name][position[name]]
            position[name] += 1
            if out and out[-1][0] == name:
                out[-1][1].append(event)
            else:
                out.append((name, [event]))
        return out


def make_streams(n: int, seed: int, kind: str = "late", *, trades_delay_us: int = 100_000,
                 quotes_delay_us: int = 50_000, coarse_us: int | None = None,
                 burst: int = 8) -> Streams:
    """``n`` trades and ``n`` quotes over the same stretch of event time, each
    shuffled within its own delay (``kind``: 'ordered', 'shuffled' or 'late'),
    arriving interleaved in runs of up to ``burst`` events of one source."""
    trades = gen_trades(n, seed, symbols=TRADE_SYMBOLS)
    quotes = gen_trades(n, seed + 1, symbols=QUOTE_SYMBOLS)
    if coarse_us:
        trades, quotes = _coarse(trades, coarse_us), _coarse(quotes, coarse_us)
        trades.sort(key=lambda r: r[3])
        quotes.sort(key=lambda r: r[3])
    trade_events = scenario(kind, trades, trades_delay_us, seed)
    quote_events = scenario(kind, quotes, quotes_delay_us, seed + 2)
    rng = random.Random(seed + 3)
    order: list[str] = []
    left = {"trades": len(trade_events), "quotes": len(quote_events)}
    while left["trades"] or left["quotes"]:
        name = rng.choice([k for k, v in left.items() if v])
        for _ in range(min(rng.randint(1, burst), left[name])):
            order.append(name)
            left[name] -= 1
    return Streams(trade_events, quote_events, order, trades_delay_us, quotes_delay_us)


def feed_runs(db: lp.LaminarDB, runs: Sequence[tuple[str, list[Event]]], mode: str,
              seed: int) -> None:
    """Push each run of events into its source (`oracle.feed`)."""
    sources = {"trades": db.source("trades"), "quotes": db.source("quotes")}
    for i, (name, events) in enumerate(runs):
        if name == "quotes":
            feed(sources[name], events, mode, seed + i, arrow_schema=QUOTES_ARROW)
        else:
            feed(sources[name], events, mode, seed + i)


class WatermarkContract:
    """Reads a view's output beside its sink and checks the watermark contract
    every reader relies on: no row is behind the watermark of the batch before
    it (a stacked window would have closed its window already)."""

    def __init__(self, view: str, time_column: str) -> None:
        self.view, self.time_column = view, time_column
        self.watermark: int | None = None
        self.broken: list[str] = []

    def on_batch(self, delta: Delta, watermark: int) -> None:
        rows = delta.rows
        if rows.height and self.watermark is not None:
            earliest = rows.get_column(self.time_column).cast(pl.Int64).min()
            if earliest is not None and earliest < self.watermark:  # type: ignore[operator]
                self.broken.append(f"{self.view}: a row at {earliest} after watermark "
                                   f"{self.watermark}")
        self.watermark = watermark if self.watermark is None else max(self.watermark,
                                                                      watermark)

    def on_end(self, error: BaseException | None = None) -> None:
        pass


def watch_watermarks(db: lp.LaminarDB) -> list[WatermarkContract]:
    """A `WatermarkContract` on every view with an event-time column."""
    contracts = []
    for name, view in db.runtime.views.items():
        if view.plan.time_column is not None:
            contract = WatermarkContract(name, view.plan.time_column)
            view.output.add_reader(contract)
            contracts.append(contract)
    return contracts


def run(db: lp.LaminarDB, streams: Streams, mode: str, seed: int, sinks: Sequence[str],
        *, start: bool | None = None) -> dict[str, pl.DataFrame]:
    """Feed both sources in their interleaved order, stop, and return what each
    sink emitted (an empty frame of its schema if nothing). Every view keeps
    the watermark contract meanwhile (`WatermarkContract`)."""
    contracts = watch_watermarks(db)
    subs = {name: db.sink(name).subscribe() for name in sinks}
    schemas = {name: db.sink(name).schema for name in sinks}
    if start if start is not None else seed % 2 == 0:
        db.start()
    feed_runs(db, streams.runs(), mode, seed)
    db.stop()
    broken = [line for contract in contracts for line in contract.broken]
    assert not broken, broken
    out = {name: read_all(sub) for name, sub in subs.items()}
    return {name: got if got.width else pl.DataFrame(schema=schemas[name])
            for name, got in out.items()}


def by_time(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows stably sorted by event time (ties keep arrival order): how Polars'
    join_asof wants them, and how the engine breaks ties (the later arrival)."""
    return rows.sort("ts", maintain_order=True)


def micros(us: int) -> dt.timedelta:
    return dt.timedelta(microseconds=us)


__all__ = ["ARRIVAL", "QUOTES_SCHEMA", "Streams", "WatermarkContract", "by_time", "feed_runs",
           "make_streams", "micros", "quotes_ddl", "run", "two_sources_ddl",
           "watch_watermarks"]
