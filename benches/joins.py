"""Join benchmark (SPEC §3 joins, SPEC §10 bar): trades ASOF quotes and interval
joins fed as 65,536-row Arrow batches, end to end against Polars in batch on the
same rows, and memory against rows seen.

Reproduce:  python benches/joins.py            (10 M trades and 10 M quotes; minutes)
            python benches/joins.py --quick    (1 M each)
            python benches/joins.py --rows 2000000 --skip memory

Workload: 100 symbols; trades and quotes over the same stretch of event time,
each stream one row per 10 us, up to 5 ms out of order (``ts = i * 10 us +
U[0, 5 ms]``), watermark delay 10 ms, so no row is late (checked). The two
sources are fed alternately, one 65,536-row pyarrow table per ``push_arrow``
(trades, then quotes, ...), from one thread; a subscriber thread reads the
view. Throughput is (trades + quotes) / (time from the first push to the last
row received, after both sources closed and ``db.stop()``), the best of
``--repeat`` runs (default 3), each run's rows checked equal to Polars batch.

Views and their Polars batch references (same rows, same run, best of
``--repeat``; the references start from the rows as they arrived, so a sort is
part of their work where the Polars call needs sorted input):

* ASOF: ``FROM trades t ASOF JOIN quotes q ON t.symbol = q.symbol AND t.ts >=
  q.ts`` — ``trades.sort("ts").join_asof(quotes.sort("ts"), on="ts",
  by="symbol")``, trades without a quote dropped;
* interval: ``FROM trades t JOIN quotes q ON q.ts BETWEEN t.ts - INTERVAL '10'
  MICROSECOND AND t.ts + INTERVAL '10' MICROSECOND`` (no key: Polars' sort-based
  inequality join, ~2 quotes per trade) — ``trades.join_where(quotes, ts_right
  >= ts - 10 us, ts_right <= ts + 10 us)``;
* keyed interval: the same with ``t.symbol = q.symbol`` and +-1 ms (~2 quotes
  per trade). Polars' ``join_where`` with the key equality pairs every trade
  with every quote of its symbol first (10^12 pairs at 10 M rows), so the
  reference is the best batch formulation found: per symbol
  (``partition_by``), the keyless ``join_where`` on the bounds; the plain
  keyed ``join_where`` is timed at ``--keyed-reference`` rows (default 50 k).

Memory: the ASOF view over 1 M and 10 M rows per stream, in child processes
that generate each batch on the fly (input memory is constant) and keep 64 k
rows of view history (``view_retention``), reporting the child's peak RSS and
the join's largest state (rows per side, from ``db.metrics()``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import threading
import time

import numpy as np
import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

import laminar_polars as lp

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00 in microseconds
SYMBOLS = [f"S{i:03d}" for i in range(100)]
BATCH = 65_536
SPACING_US = 10
JITTER_US = 5_000
SOURCES = """
CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT,
    ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '10' MILLISECOND)
    WITH (buffer_size = 1048576);
CREATE SOURCE quotes (symbol VARCHAR NOT NULL, bid DOUBLE, ask DOUBLE,
    ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '10' MILLISECOND)
    WITH (buffer_size = 1048576)"""
VIEWS = {
    "asof": """SELECT t.symbol, t.price, t.qty, t.ts, q.bid, q.ask, q.ts AS quote_ts
               FROM trades t ASOF JOIN quotes q ON t.symbol = q.symbol AND t.ts >= q.ts""",
    "interval": """SELECT t.symbol, t.price, t.ts, q.symbol AS quote_symbol, q.bid,
                          q.ts AS quote_ts
                   FROM trades t JOIN quotes q ON q.ts BETWEEN
                        t.ts - INTERVAL '10' MICROSECOND AND t.ts + INTERVAL '10' MICROSECOND""",
    "keyed": """SELECT t.symbol, t.price, t.ts, q.bid, q.ts AS quote_ts
                FROM trades t JOIN quotes q ON t.symbol = q.symbol AND q.ts BETWEEN
                     t.ts - INTERVAL '1' MILLISECOND AND t.ts + INTERVAL '1' MILLISECOND""",
}


# -- the workload ---------------------------------------------------------------
def block(kind: str, first: int, n: int) -> pa.Table:
    """Rows first .. first+n-1 of the trades or quotes stream (deterministic)."""
    rng = np.random.default_rng([0 if kind == "trades" else 1, first])
    index = np.arange(first, first + n, dtype=np.int64)
    code = rng.integers(0, len(SYMBOLS), n, dtype=np.int32)
    symbol = pa.DictionaryArray.from_arrays(pa.array(code), pa.array(SYMBOLS)).cast(pa.string())
    ts = pa.array(T0 + index * SPACING_US + rng.integers(0, JITTER_US + 1, n), pa.timestamp("us"))
    if kind == "trades":
        return pa.table({"symbol": symbol, "price": np.round(rng.uniform(100, 200, n), 2),
                         "qty": rng.integers(1, 1000, n, dtype=np.int64), "ts": ts})
    bid = np.round(rng.uniform(100, 200, n), 2)
    return pa.table({"symbol": symbol, "bid": bid, "ask": bid + 0.01, "ts": ts})


def tables(kind: str, n_rows: int) -> list[pa.Table]:
    return [block(kind, i, min(BATCH, n_rows - i)) for i in range(0, n_rows, BATCH)]


# -- the engine -------------------------------------------------------------------
class Reader(threading.Thread):
    """Subscriber thread: keeps every frame; ``last`` is when the last one came."""

    def __init__(self, sub: lp.Subscription, keep: bool = True) -> None:
        super().__init__(daemon=True)
        self.sub, self.keep = sub, keep
        self.frames: list[pl.DataFrame] = []
        self.rows = 0
        self.last = 0

    def run(self) -> None:
        for frame in self.sub:
            self.rows += frame.height
            if self.keep:
                self.frames.append(frame)
            self.last = time.perf_counter_ns()


WORKERS = 1


def open_db(view: str, retention: int = 65_536, keep: bool = True
            ) -> tuple[lp.LaminarDB, Reader]:
    db = lp.open(lp.Config(workers=WORKERS, view_retention=retention))
    db.execute(SOURCES)
    db.execute(f"CREATE MATERIALIZED VIEW {view} AS {VIEWS[view]}")
    reader = Reader(db.sink(view).subscribe(max_lag_rows=1 << 40), keep)
    reader.start()
    db.start()
    return db, reader


def stream(view: str, trades: list[pa.Table], quotes: list[pa.Table]
           ) -> tuple[float, pl.DataFrame, dict]:
    """Push both streams alternately, close, stop: seconds from the first push to
    the last row received, the rows, the metrics."""
    db, reader = open_db(view)
    src_t, src_q = db.source("trades"), db.source("quotes")
    start = time.perf_counter_ns()
    for t, q in zip(trades, quotes, strict=True):
        src_t.push_arrow(t)
        src_q.push_arrow(q)
    src_t.close()
    src_q.close()
    db.stop()
    reader.join()
    end = reader.last or time.perf_counter_ns()
    rows = pl.concat(reader.frames) if reader.frames else pl.DataFrame()
    return (end - start) / 1e9, rows, db.metrics()


# -- references ---------------------------------------------------------------------
def reference(view: str, trades: pl.DataFrame, quotes: pl.DataFrame) -> pl.DataFrame:
    """The view's rows computed by Polars in batch (the timed part)."""
    if view == "asof":
        right = quotes.with_columns(quote_ts=pl.col("ts")).sort("ts")
        return (trades.sort("ts").join_asof(right, on="ts", by="symbol", check_sortedness=False)
                .filter(pl.col("quote_ts").is_not_null())
                .select("symbol", "price", "qty", "ts", "bid", "ask", "quote_ts"))
    width = dt.timedelta(microseconds=10 if view == "interval" else 1000)
    right = quotes.select(pl.col("symbol").alias("quote_symbol"), "bid",
                          pl.col("ts").alias("quote_ts"))
    predicates = [pl.col("quote_ts") >= pl.col("ts") - width,
                  pl.col("quote_ts") <= pl.col("ts") + width]
    if view == "interval":
        return trades.join_where(right, *predicates).select(
            "symbol", "price", "ts", "quote_symbol", "bid", "quote_ts")
    if view == "keyed_naive":
        return trades.join_where(right, *predicates,
                                 pl.col("symbol") == pl.col("quote_symbol")).select(
            "symbol", "price", "ts", "bid", "quote_ts")
    by_symbol = right.partition_by("quote_symbol", as_dict=True)
    parts = [part.join_where(by_symbol[key], *predicates)
             for key, part in trades.partition_by("symbol", as_dict=True).items()
             if key in by_symbol]
    return pl.concat(parts).select("symbol", "price", "ts", "bid", "quote_ts")


def timed_reference(view: str, trades: pl.DataFrame, quotes: pl.DataFrame,
                    repeat: int) -> tuple[float, pl.DataFrame]:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        expected = reference(view, trades, quotes)
        best = min(best, time.perf_counter() - start)
    return best, expected


def same(got: pl.DataFrame, expected: pl.DataFrame, view: str) -> None:
    assert got.columns == expected.columns, (view, got.columns, expected.columns)
    order = [c for c in expected.columns]
    assert_frame_equal(got.sort(order), expected.sort(order), check_dtypes=False)


# -- memory (child processes) -------------------------------------------------------
def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def memory_child(n_rows: int) -> None:
    db, reader = open_db("asof", retention=65_536, keep=False)
    src_t, src_q = db.source("trades"), db.source("quotes")
    baseline = peak_rss_mib()
    largest = {"left": 0, "right": 0}
    for first in range(0, n_rows, BATCH):
        size = min(BATCH, n_rows - first)
        src_t.push_arrow(block("trades", first, size))
        src_q.push_arrow(block("quotes", first, size))
        join = db.metrics()["views"]["asof"]["join"]
        for side in largest:
            largest[side] = max(largest[side], join[side]["state_rows"])
    src_t.close()
    src_q.close()
    db.stop()
    reader.join()
    print(json.dumps({"rows per stream": n_rows, "rows out": reader.rows,
                      "rss at start MiB": round(baseline), "peak rss MiB": round(peak_rss_mib()),
                      "largest left state rows": largest["left"],
                      "largest right state rows": largest["right"]}))


def memory(n_rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(n_rows),
                          "--workers", str(WORKERS)], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main ---------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="rows per stream (default 10 M)")
    parser.add_argument("--quick", action="store_true", help="1 M rows per stream")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure, best counts")
    parser.add_argument("--skip", default="", help="comma list of: asof,interval,keyed,memory")
    parser.add_argument("--keyed-reference", type=int, default=50_000,
                        help="rows per stream for Polars' keyed join_where reference")
    parser.add_argument("--workers", type=int, default=1, help="Config.workers")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    if args.memory_child:
        return memory_child(args.memory_child)
    n = args.rows or (1_000_000 if args.quick else 10_000_000)
    skip = set(filter(None, args.skip.split(",")))
    print(f"# benches/joins.py  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# python {platform.python_version()}, polars {pl.__version__}, "
          f"pyarrow {pa.__version__}, laminar_polars {lp.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cores, workers={WORKERS}")
    print(f"# reproduce: {' '.join(['python', 'benches/joins.py', *sys.argv[1:]])}")
    print(f"# {n:,} trades + {n:,} quotes, {len(SYMBOLS)} symbols, {SPACING_US} us apart per "
          f"stream, <= {JITTER_US // 1000} ms out of order, watermark delay 10 ms, "
          f"{BATCH:,}-row Arrow batches\n", flush=True)

    trades, quotes = tables("trades", n), tables("quotes", n)
    frames = pl.DataFrame(pa.concat_tables(trades)), pl.DataFrame(pa.concat_tables(quotes))
    for view in ("asof", "interval", "keyed"):
        if view in skip:
            continue
        best, rows_out, checked = 0.0, 0, False
        for _ in range(args.repeat):
            seconds, got, metrics = stream(view, trades, quotes)
            late = sum(s["late"] for s in metrics["sources"].values())
            assert late == 0, f"{late} rows counted late; the workload has none"
            if not checked:  # every run emits the same rows; the first is compared
                same(got, reference(view, *frames), view)
                checked = True
            best, rows_out = max(best, 2 * n / seconds), got.height
            del got
        print(f"{view}: engine {best / 1e6:.2f} M rows/s end to end ({rows_out:,} rows out; "
              f"state at the end {metrics['views'][view]['join']['left']['state_rows']} + "
              f"{metrics['views'][view]['join']['right']['state_rows']} rows)", flush=True)
        if view == "keyed":
            k = min(n, args.keyed_reference)
            small = pl.DataFrame(pa.concat_tables(tables("trades", k))), pl.DataFrame(
                pa.concat_tables(tables("quotes", k)))
            seconds, _ = timed_reference("keyed_naive", *small, args.repeat)
            print(f"  Polars batch join_where with the key equality, at {k:,} rows per "
                  f"stream: {2 * k / seconds / 1e6:.2f} M rows/s (it pairs each trade with "
                  "every quote of its symbol first)", flush=True)
        seconds, _ = timed_reference(view, *frames, args.repeat)
        polars = 2 * n / seconds
        name = {"asof": "join_asof (with its sorts)", "interval": "join_where",
                "keyed": "join_where per symbol (partition_by)"}[view]
        print(f"  Polars batch {name}: {polars / 1e6:.2f} M rows/s -> engine / batch = "
              f"{best / polars:.2f}x", flush=True)
    del trades, quotes, frames
    if "memory" not in skip:
        print("\nmemory, ASOF view (child process per size, batches generated on the fly):")
        for size in ((100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)):
            print(f"  {json.dumps(memory(size))}", flush=True)


if __name__ == "__main__":
    main()
