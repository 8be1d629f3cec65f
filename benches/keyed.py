"""Continuous aggregate: the cost of one 100-row micro-batch against the keys held
(SPEC §10: 1 M keys <= 3x 1 k keys).

Reproduce:  python benches/keyed.py              (1 k, 100 k and 1 M keys; a few minutes)
            python benches/keyed.py --quick      (1 k and 100 k keys)
            python benches/keyed.py --workers 2  (the state split across 2 threads)

The view is ``SELECT k, count(*), sum(v), max(v), count(DISTINCT u) FROM s GROUP BY
k``. Its state is loaded with N keys (one Arrow batch of N rows, every key once),
then 100-row batches arrive, each touching 100 random keys already held (and,
in a second series, 10 new ones among them). Two measurements per N:

- operator: `KeyedAggregate.on_batch` timed alone (the engine's work per batch),
  median / mean / p99 over 400 batches; the mean includes the occasional
  compaction of the keyed state (its O(state) merge, amortized);
- end to end: through the public API, ``push_arrow`` of the batch until a
  subscriber thread has received its 100 upserts (engine thread, sink and
  wake-ups included), median over 200 batches.

Each figure is printed with the ratio to the 1 k-key figure of the same run.

Throughput (where workers may pay): 4 M rows over 1 M keys pushed as 65,536-row
Arrow batches, end to end to a subscriber that counts the upserts; rows/s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import polars as pl

import laminar_polars as lp
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.ops.keyed import KeyedAggregate
from laminar_polars.engine.ops.sharded import Sharded
from laminar_polars.plan import Scan
from laminar_polars.sql import parse_statements, plan_select

DDL = "CREATE SOURCE s (k BIGINT NOT NULL, v BIGINT, u BIGINT)"
VIEW = ("CREATE MATERIALIZED VIEW totals AS SELECT k, count(*) AS n, sum(v) AS total, "
        "max(v) AS top, count(DISTINCT u) AS users FROM s GROUP BY k")
SCHEMA = pl.Schema({"k": pl.Int64, "v": pl.Int64, "u": pl.Int64})
BATCH = 100


def _frame(keys: np.ndarray, rng: np.random.Generator) -> pl.DataFrame:
    return pl.DataFrame({"k": keys, "v": rng.integers(0, 1000, len(keys)),
                         "u": rng.integers(0, 50, len(keys))})


def _batches(keys: int, count: int, new: int, rng: np.random.Generator) -> list[pl.DataFrame]:
    fresh = keys
    out = []
    for _ in range(count):
        touched = rng.integers(0, keys, BATCH - new)
        added = np.arange(fresh, fresh + new)
        fresh += new
        out.append(_frame(np.concatenate([touched, added]), rng))
    return out


def operator_cost(keys: int, new: int, count: int = 400, workers: int = 1) -> dict[str, float]:
    [statement] = parse_statements(VIEW)
    plan = plan_select(statement.query, lambda name: Scan(name, SCHEMA), None)
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    op = Sharded(lambda: KeyedAggregate(plan), ["k"], workers, pool)
    rng = np.random.default_rng(keys)
    op.on_batch(0, Delta(_frame(np.arange(keys), rng)))  # load the state
    batches = _batches(keys, count + 20, new, rng)
    for batch in batches[:20]:  # warm up
        op.on_batch(0, Delta(batch))
    samples = []
    for batch in batches[20:]:
        start = time.perf_counter()
        op.on_batch(0, Delta(batch))
        samples.append(time.perf_counter() - start)
    assert op.state_rows >= keys
    if pool is not None:
        pool.shutdown()
    return {"median": statistics.median(samples) * 1e3, "mean": statistics.mean(samples) * 1e3,
            "p99": float(np.percentile(samples, 99)) * 1e3}


def end_to_end(keys: int, count: int = 200, workers: int = 1) -> float:
    rng = np.random.default_rng(keys + 1)
    db = lp.open(lp.Config(workers=workers))
    db.execute(DDL)
    db.execute(VIEW)
    sub = db.sink("totals").subscribe()
    received = threading.Semaphore(0)
    rows = [0]

    def read() -> None:
        for frame in sub:
            rows[0] += frame.height
            received.release()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    db.start()
    src = db.source("s")
    src.push_arrow(_frame(np.arange(keys), rng))
    while rows[0] < keys:
        received.acquire(timeout=60)
    samples = []
    for batch in _batches(keys, count, 0, rng):
        table = batch.to_arrow()
        target = rows[0] + batch["k"].n_unique()
        start = time.perf_counter()
        src.push_arrow(table)
        while rows[0] < target:
            received.acquire(timeout=60)
        samples.append(time.perf_counter() - start)
    db.stop()
    reader.join(60)
    return statistics.median(samples[20:]) * 1e3


def throughput(keys: int = 1_000_000, rows: int = 4_000_000, batch: int = 65_536,
               workers: int = 1) -> float:
    rng = np.random.default_rng(7)
    tables = [_frame(rng.integers(0, keys, batch), rng).to_arrow()
              for _ in range(rows // batch)]
    db = lp.open(lp.Config(workers=workers, buffer_size=1 << 20))
    db.execute(DDL)
    db.execute(VIEW)
    sub = db.sink("totals").subscribe()
    reader = threading.Thread(target=lambda: sum(f.height for f in sub), daemon=True)
    reader.start()
    db.start()
    src = db.source("s")
    start = time.perf_counter()
    for table in tables:
        src.push_arrow(table)
    db.stop()
    reader.join(300)
    return len(tables) * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 k and 100 k keys only")
    parser.add_argument("--workers", type=int, default=1,
                        help="Config.workers: the keyed state split across this many threads")
    args = parser.parse_args()
    sizes = (1_000, 100_000) if args.quick else (1_000, 100_000, 1_000_000)
    print(f"# benches/keyed.py  {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"# python {platform.python_version()}, polars {pl.__version__}, "
          f"laminar_polars {lp.__version__}, {platform.machine()}")
    print(f"# reproduce: python {' '.join(['benches/keyed.py', *sys.argv[1:]])}")
    print(f"# workers: {args.workers}")
    print(f"# view: {VIEW}")
    print("\nper 100-row batch, ms       median   mean    p99    median / 1 k keys")
    base: dict[str, float] = {}
    ratio = 0.0
    for new in (0, 10):
        for keys in sizes:
            cost = operator_cost(keys, new, workers=args.workers)
            label = f"operator, {keys:>9,} keys{', 10 new' if new else ''}"
            base.setdefault(f"op{new}", cost["median"])
            ratio = max(ratio, cost["median"] / base[f"op{new}"])
            print(f"{label:<32} {cost['median']:6.2f} {cost['mean']:6.2f} {cost['p99']:6.2f}"
                  f"    {cost['median'] / base[f'op{new}']:.2f}x")
    for keys in sizes:
        median = end_to_end(keys, workers=args.workers)
        base.setdefault("e2e", median)
        print(f"{f'end to end, {keys:>7,} keys':<32} {median:6.2f}"
              f"                   {median / base['e2e']:.2f}x")
    if not args.quick:
        rate = throughput(workers=args.workers)
        print(f"\nthroughput, 1,000,000 keys, 65,536-row Arrow batches: {rate / 1e6:.2f} M rows/s")
    print(f"\nbar: {sizes[-1]:,} keys <= 3x 1 k keys (operator median, worst series): "
          f"{'met' if ratio <= 3 else 'NOT met'} ({ratio:.2f}x)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
