"""``laminar-polars demo``: live OHLC bars over a synthetic trade feed.

``laminar-polars demo`` runs the OHLC pipeline of examples/ohlc.sql on a synthetic trade feed
and prints each bar as its window closes, with a progress line. Event time is
simulated: the feed's clock runs ``--speed`` times faster than the wall clock,
so with the defaults (1 s bars, speed 2, 1,000 trades per simulated second)
a bar per symbol closes every half second for 5 s, then the source closes,
the last bars close, and the command exits 0.

Output is plain text: bar lines are data, lines starting with ``#`` are
progress and summary. On a terminal the progress line updates in place; when
piped it is printed once a second.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
import time
from typing import Any, TextIO

import polars as pl

import laminar_polars as lp
from laminar_polars.demo_feed import TradeFeed, Trades, symbol_names

__all__ = ["DemoResult", "add_arguments", "main", "run_demo"]

SOURCE_DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '{delay_ms}' MILLISECOND
) WITH (buffer_size = 65536)"""

VIEW_SQL = """
CREATE MATERIALIZED VIEW ohlc AS
SELECT symbol,
       tumble(ts, {interval})     AS window_start,
       tumble_end(ts, {interval}) AS window_end,
       first_value(price) AS open, max(price) AS high,
       min(price) AS low, last_value(price) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, {interval})
EMIT ON WINDOW CLOSE"""

COLUMNS = ["symbol", "window_start", "window_end", "open", "high", "low", "close",
           "volume", "trades"]


def sql_interval(delta: dt.timedelta) -> str:
    """``INTERVAL 'n' UNIT`` in the largest unit that divides ``delta`` exactly."""
    micros = delta // dt.timedelta(microseconds=1)
    for unit, size in (("HOUR", 3_600_000_000), ("MINUTE", 60_000_000),
                       ("SECOND", 1_000_000), ("MILLISECOND", 1_000)):
        if micros % size == 0:
            return f"INTERVAL '{micros // size}' {unit}"
    raise ValueError(f"a bar must be a whole number of milliseconds, got {delta}")


@dataclasses.dataclass
class DemoResult:
    """What a demo run pushed and received (the test compares the two)."""

    trades: Trades  # every row pushed, late ones included (``trades.late``)
    bars: pl.DataFrame  # every bar the subscriber received, in arrival order
    seconds: float  # wall time from the first push to the last bar
    metrics: dict[str, Any]  # db.metrics() at the end


class _Screen:
    """Bar lines and a progress line on a text stream (terminal or pipe)."""

    def __init__(self, out: TextIO, quiet: bool) -> None:
        self.out, self.quiet = out, quiet
        self.tty = hasattr(out, "isatty") and out.isatty()
        self.status = ""  # progress text currently shown in place (terminal only)
        self.next_progress = 0.0

    def _clear(self) -> None:
        if self.status:
            self.out.write("\r" + " " * len(self.status) + "\r")
            self.status = ""

    def line(self, text: str) -> None:
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def header(self, text: str) -> None:
        if not self.quiet:
            self.line(text)
            self.line(f"{'window (event time)':<25} {'symbol':<6} {'open':>9} {'high':>9} "
                      f"{'low':>9} {'close':>9} {'volume':>9} {'trades':>6}")

    def bars(self, frame: pl.DataFrame) -> None:
        if self.quiet or frame.height == 0:
            return
        for row in frame.sort("window_start", "symbol").iter_rows(named=True):
            window = f"{row['window_start']:%H:%M:%S.%f}"[:-3] + f"-{row['window_end']:%H:%M:%S}"
            self.line(f"{window:<25} {row['symbol']:<6} {row['open']:>9.2f} {row['high']:>9.2f} "
                      f"{row['low']:>9.2f} {row['close']:>9.2f} {row['volume']:>9,} "
                      f"{row['trades']:>6,}")

    def progress(self, now: float, text: str, force: bool = False) -> None:
        if self.quiet or (now < self.next_progress and not force):
            return
        self.next_progress = now + (0.2 if self.tty else 1.0)
        if self.tty:
            self._clear()
            self.status = "# " + text
            self.out.write(self.status)
            self.out.flush()
        else:
            self.line("# " + text)


def _clock(value: dt.datetime) -> str:
    """A watermark for the progress line: ``-`` before any event, ``closed`` after."""
    if value == dt.datetime.min:
        return "-"
    if value == dt.datetime.max:
        return "closed"
    return f"{value:%H:%M:%S.%f}"[:-3]


def _select_bars(frame: pl.DataFrame, bar: dt.timedelta) -> pl.DataFrame:
    """The view's columns in display order (a LazyFrame view names the start ``ts``)."""
    if "window_start" not in frame.columns and "ts" in frame.columns:
        frame = frame.rename({"ts": "window_start"})
    if "window_end" not in frame.columns:
        frame = frame.with_columns(window_end=pl.col("window_start") + bar)
    return frame.select(COLUMNS)


def run_demo(args: argparse.Namespace, out: TextIO | None = None) -> DemoResult:
    """Run the OHLC demo described by parsed ``args`` (see :func:`build_parser`),
    printing to ``out`` (default: standard output)."""
    bar = lp.parse_duration(args.bar, what="--bar")
    if bar <= dt.timedelta(0):
        raise ValueError(f"--bar must be positive, got {args.bar!r}")
    delay = dt.timedelta(milliseconds=args.delay_ms)
    names = symbol_names(args.symbols)
    feed = TradeFeed(names, seed=args.seed, rate=args.rate, delay=delay,
                     late_fraction=args.late_fraction)
    screen = _Screen(out or sys.stdout, args.quiet)

    db = lp.open()
    db.execute(SOURCE_DDL.format(delay_ms=args.delay_ms))
    if args.lazy:  # the same view through the Polars API (docs/sql.md)
        every = f"{bar // dt.timedelta(microseconds=1)}us"
        db.create_materialized_view("ohlc", (
            db.stream("trades").group_by_dynamic("ts", every=every, group_by="symbol")
            .agg(pl.col("price").first().alias("open"), pl.col("price").max().alias("high"),
                 pl.col("price").min().alias("low"), pl.col("price").last().alias("close"),
                 pl.col("qty").sum().alias("volume"), pl.len().alias("trades"))
        ), emit="on_window_close")
    else:
        db.execute(VIEW_SQL.format(interval=sql_interval(bar)))
    sub = db.sink("ohlc").subscribe()
    src = db.source("trades")
    db.start()

    mode = f"push_arrow batches of {args.batch:,} rows" if args.batch else "one row per push"
    pace = f"{args.speed:g}x real time" if args.speed else "as fast as possible"
    screen.header(f"# OHLC bars of {bar.total_seconds():g} s over {len(names)} symbols; "
                  f"{args.rate:,.0f} trades per simulated second at {pace}; {mode}; "
                  f"watermark delay {args.delay_ms} ms")

    # rows per push call: one Arrow batch, or about 20 ms of feed when pacing
    step = args.batch or max(1, min(4096, int(args.rate * (args.speed or 100) / 50)))
    limit = args.rows if args.rows is not None else float("inf")
    duration = args.duration if args.duration is not None else (
        5.0 if args.rows is None else float("inf"))
    parts: list[Trades] = []
    received: list[pl.DataFrame] = []

    def take_bars(frame: pl.DataFrame | None) -> None:
        if frame is not None and frame.height:
            frame = _select_bars(frame, bar)
            received.append(frame)
            screen.bars(frame)

    def progress(now: float, force: bool = False) -> None:
        if screen.quiet or (now < screen.next_progress and not force):
            return
        m = db.metrics()["sources"]["trades"]
        elapsed = max(now - start, 1e-9)
        screen.progress(now, f"{pushed:,} rows pushed, {pushed / elapsed:,.0f} rows/s, "
                        f"watermark {_clock(m['watermark'])}, late {m['late']:,}, "
                        f"bars {sum(f.height for f in received):,}", force)

    pushed = 0
    start = time.perf_counter()
    screen.next_progress = start + 0.25  # a rate over a few pushes says nothing
    try:
        while pushed < limit and time.perf_counter() - start < duration:
            trades = feed.take(int(min(step, limit - pushed)))
            if args.batch:
                src.push_arrow(trades.to_arrow())
            else:
                push = src.push
                for row in trades.rows():
                    push(row)
            parts.append(trades)
            pushed += len(trades)
            if args.speed:  # wait until the wall clock catches up with the feed's clock
                due = start + pushed / (args.rate * args.speed)
                while (now := time.perf_counter()) < due:
                    take_bars(sub.poll())
                    progress(now)
                    time.sleep(min(due - now, 0.01))
            take_bars(sub.poll())
            progress(time.perf_counter())
        src.close()  # the watermark goes to +inf: every open window closes
        db.stop()  # drains what was pushed and ends the subscription
        for frame in sub:
            take_bars(frame)
    finally:
        db.stop()
    seconds = time.perf_counter() - start
    progress(time.perf_counter(), force=True)
    metrics = db.metrics()
    bars = pl.concat(received) if received else _select_bars(pl.DataFrame(schema=sub.schema), bar)
    result = DemoResult(Trades.concat(parts, names), bars, seconds, metrics)
    source = metrics["sources"]["trades"]
    screen.line(f"# done: {pushed:,} rows in {seconds:.2f} s ({pushed / seconds:,.0f} rows/s), "
                f"{source['late']:,} late rows dropped, {bars.height:,} bars")
    return result


def add_arguments(demo: argparse.ArgumentParser) -> None:
    """The options of ``laminar-polars demo``."""
    demo.add_argument("--bar", default="1s",
                      help="bar (tumbling window) size, e.g. 500ms, 1s, 1m (default 1s)")
    demo.add_argument("--rows", type=int, help="stop after this many trades")
    demo.add_argument("--duration", type=float,
                      help="stop after this many wall-clock seconds (default 5, or no "
                           "limit when --rows is given)")
    demo.add_argument("--symbols", default="4",
                      help="a count or a comma-separated list (default 4)")
    demo.add_argument("--batch", type=int, nargs="?", const=1024, default=0, metavar="N",
                      help="push N-row Arrow batches (push_arrow; N defaults to 1024) "
                           "instead of one row per push")
    demo.add_argument("--rate", type=float, default=1000.0,
                      help="trades per simulated second (default 1000)")
    demo.add_argument("--speed", type=float, default=2.0,
                      help="simulated seconds per wall-clock second; 0 = no pacing (default 2)")
    demo.add_argument("--delay-ms", type=int, default=100,
                      help="watermark delay in ms (default 100; trades are up to 50 ms "
                           "out of order)")
    demo.add_argument("--late-fraction", type=float, default=0.002,
                      help="fraction of trades stamped 1-3 s in the past (default 0.002)")
    demo.add_argument("--seed", type=int, default=0, help="feed seed (default 0)")
    demo.add_argument("--lazy", action="store_true",
                      help="define the view as a Polars LazyFrame instead of SQL")
    demo.add_argument("--quiet", action="store_true", help="print the summary line only")


def main(args: argparse.Namespace) -> int:
    """Run the demo for parsed ``args``; the exit code."""
    if (args.rows is not None and args.rows < 0) or args.rate <= 0 or args.speed < 0:
        args.parser.error("--rows, --rate and --speed must not be negative (--rate > 0)")
    try:
        run_demo(args)
    except KeyboardInterrupt:
        return 130
    except (lp.LaminarError, ValueError) as error:
        print(f"laminar-polars demo: {error}", file=sys.stderr)
        return 1
    return 0
