"""Push-path benchmark (SPEC §10): latency per push, rows/s, allocations per push.

Reproduce:  python benches/push.py            (about a minute)
            python benches/push.py --quick    (smaller counts, a smoke run)

Every figure is measured in this one run, next to a reference measured the same
way in the same run (`queue.SimpleQueue.put` of the same tuple), so ratios are
comparable across machines. Latency is timed per call with
`time.perf_counter_ns`; the timer's own cost (the median of an empty timed
call) is subtracted. The engine is running and draining the ring throughout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import platform
import queue
import statistics
import sys
import threading
import time
import tracemalloc

import numpy as np
import polars as pl
import pyarrow as pa

import laminar_polars as lp

DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '50' MILLISECOND
) WITH (buffer_size = {size}, wait_strategy = 'spin_yield(100)');
CREATE SINK raw FROM trades
"""
T0 = 1_704_067_200_000_000  # 2024-01-01 in microseconds


def open_db(size: int) -> tuple[lp.LaminarDB, lp.Source, threading.Thread]:
    db = lp.open()
    db.execute(DDL.format(size=size))
    sub = db.sink("raw").subscribe()
    reader = threading.Thread(target=lambda: sum(f.height for f in sub), daemon=True)
    reader.start()
    db.start()
    return db, db.source("trades"), reader


def percentiles(samples: list[int], timer_cost: float) -> dict[str, float]:
    values = np.asarray(samples, dtype=np.float64) - timer_cost
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "p99.9": float(np.percentile(values, 99.9)),
    }


def time_calls(call, args: list, clock=time.perf_counter_ns) -> list[int]:
    samples = [0] * len(args)
    for i, arg in enumerate(args):
        t0 = clock()
        call(arg)
        samples[i] = clock() - t0
    return samples


def timer_cost(n: int, clock=time.perf_counter_ns) -> float:
    samples = [0] * n
    for i in range(n):
        t0 = clock()
        samples[i] = clock() - t0
    return statistics.median(samples)


def latency(n: int) -> dict[str, dict[str, float]]:
    rows = [("AAPL", 150.0 + (i % 100) / 100, i % 1000, T0 + i) for i in range(n)]
    cost = timer_cost(n)
    db, src, reader = open_db(1 << 16)
    gc.disable()  # a collection pause is not the ring's latency
    try:
        time_calls(src.push, rows[: n // 10])  # warm up
        pushes = time_calls(src.push, [(r[0], r[1], r[2], r[3] + n) for r in rows])
        q: queue.SimpleQueue = queue.SimpleQueue()
        puts = time_calls(q.put, rows)
    finally:
        gc.enable()
        db.stop()
        reader.join()
    return {
        "timer": {"median_ns": cost},
        "Source.push": percentiles(pushes, cost),
        "SimpleQueue.put": percentiles(puts, cost),
    }


def throughput(n_rows: int, batch_rows: int) -> dict[str, float]:
    results = {}
    rows = [("AAPL", 150.0, i % 1000, T0 + i) for i in range(n_rows)]

    db, src, reader = open_db(1 << 16)
    push = src.push
    start = time.perf_counter()
    for row in rows:
        push(row)
    results["push rows/s"] = n_rows / (time.perf_counter() - start)
    db.stop()
    reader.join()

    db, src, reader = open_db(1 << 16)
    chunks = [rows[i:i + 1024] for i in range(0, n_rows, 1024)]
    start = time.perf_counter()
    for chunk in chunks:
        src.push_batch(chunk)
    results["push_batch(1024) rows/s"] = n_rows / (time.perf_counter() - start)
    db.stop()
    reader.join()

    batch = pa.table({
        "symbol": pa.array(["AAPL", "MSFT", "NVDA", "AMZN"] * (batch_rows // 4)),
        "price": np.random.default_rng(0).uniform(100, 200, batch_rows),
        "qty": np.arange(batch_rows, dtype=np.int64),
        "ts": pa.array(T0 + np.arange(batch_rows, dtype=np.int64), pa.timestamp("us")),
    })
    ring_rows = 1 << 20
    # "ingest": as many batches as the ring holds, so push_arrow never waits;
    # "sustained": 8x more, so the producer is paced by the engine's draining.
    for label, n_batches in (("ingest", ring_rows // batch_rows),
                             ("sustained", 8 * ring_rows // batch_rows)):
        batches = []
        for i in range(n_batches):  # ascending event time, so no row is late
            ts = pa.compute.add(batch.column("ts"), pa.scalar(i * batch_rows, pa.duration("us")))
            batches.append(batch.set_column(3, "ts", ts))
        db, src, reader = open_db(ring_rows)
        start = time.perf_counter()
        for b in batches:
            src.push_arrow(b)
        elapsed = time.perf_counter() - start
        results[f"push_arrow({batch_rows}) {label} rows/s"] = n_batches * batch_rows / elapsed
        db.stop()
        reader.join()

    q: queue.SimpleQueue = queue.SimpleQueue()
    start = time.perf_counter()
    for row in rows:
        q.put(row)
    results["SimpleQueue.put rows/s"] = n_rows / (time.perf_counter() - start)
    return results


def allocations(n: int) -> dict[str, float]:
    """Net Python allocations retained per push in steady state (tracemalloc).

    The engine is not started here (the ring holds every row), so everything
    traced during the loop is the push call's or the loop's own doing."""
    rows = [("AAPL", 150.0, i % 1000, T0 + i) for i in range(n)]
    db = lp.open()
    db.execute(DDL.format(size=1 << (2 * n - 1).bit_length()))
    src = db.source("trades")
    push = src.push
    for row in rows[: n // 4]:  # reach steady state first
        push(row)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    snapshot_before = tracemalloc.take_snapshot()
    for row in rows:
        push(row)
    snapshot_after = tracemalloc.take_snapshot()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    db.stop()
    ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
    diff = snapshot_after.filter_traces(ignore).compare_to(
        snapshot_before.filter_traces(ignore), "lineno")
    net_blocks = sum(d.count_diff for d in diff)
    return {"net blocks per push": net_blocks / n, "net bytes per push": (after - before) / n}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small counts (smoke run)")
    args = parser.parse_args()
    n_latency = 100_000 if args.quick else 1_000_000
    n_rows = 200_000 if args.quick else 2_000_000

    print(f"# benches/push.py  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# python {platform.python_version()}, polars {pl.__version__}, "
          f"pyarrow {pa.__version__}, laminar_polars {lp.__version__}, "
          f"{platform.machine()}, {platform.processor() or platform.platform()}")
    print(f"# reproduce: python benches/push.py{' --quick' if args.quick else ''}\n")

    lat = latency(n_latency)
    print(f"timer cost (median, subtracted): {lat['timer']['median_ns']:.0f} ns")
    print(f"{'per call, ns':<22}{'p50':>8}{'p99':>8}{'p99.9':>8}")
    for name in ("Source.push", "SimpleQueue.put"):
        p = lat[name]
        print(f"{name:<22}{p['p50']:>8.0f}{p['p99']:>8.0f}{p['p99.9']:>8.0f}")
    ratio = lat["Source.push"]["p50"] / max(lat["SimpleQueue.put"]["p50"], 1)
    print(f"push p50 / SimpleQueue.put p50 = {ratio:.1f}x\n")

    rates = throughput(n_rows, 65_536)
    for name, value in rates.items():
        print(f"{name:<40}{value / 1e6:>10.2f} M")
    print()
    allocs = allocations(n_latency // 4)
    for name, value in allocs.items():
        print(f"tracemalloc {name:<24}{value:>10.4f}")

    bars = {
        "push p50 < 150 ns": lat["Source.push"]["p50"] < 150,
        "push p99 < 500 ns": lat["Source.push"]["p99"] < 500,
        "0 allocations retained per push": abs(allocs["net blocks per push"]) < 1e-3,
        "push_arrow > 100 M rows/s (ingest)": rates["push_arrow(65536) ingest rows/s"] > 100e6,
    }
    print("\nbars: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in bars.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
