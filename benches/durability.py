"""Durability benchmark (SPEC §10 bars, docs/durability.md): what checkpoints and
the write-ahead log cost, group commit, checkpoint size and time, recovery time.

Reproduce:  python benches/durability.py            (a few minutes)
            python benches/durability.py --quick    (smaller counts, a smoke run)
            python benches/durability.py --dir /some/disk   (state on another disk)

Every figure comes from this one run, on the disk ``--dir`` is on (default: a
temporary directory), whose own fsync latency is measured first (append 4 KiB,
``os.fsync``, repeated), since the log's costs are bounded by it.

1. OHLC cost: the SPEC §3 view fed 65,536-row pyarrow tables by
   ``Source.push_arrow`` (the workload of benches/ohlc.py (b)), in four settings
   run round-robin ``--repeat`` times: no ``data_dir``; checkpoints only
   (``checkpoint_interval``, default 100 ms, so a run takes several); + async
   WAL; + sync WAL. Throughput is trades / (first push to last bar received);
   the bars are checked against Polars batch in every run. The cost of a
   setting is 1 - its throughput / the no-``data_dir`` throughput of the same
   round; the median and range over rounds are printed.
2. Group commit: single-row ``Source.push`` with ``wal_mode="sync"`` from 4 (the
   bar's setting) and 32 producer threads; rows/s, fsyncs, rows per fsync. A
   producer waits for its row's fsync, so n producers cannot exceed n rows per
   fsync: the ceiling is n / fsync latency.
3. Checkpoint and recovery of 1 M keys: a child process keeps ``sum``/``count``
   per key for 1 M keys (a continuous aggregate), takes a checkpoint (its time
   and size are reported), pushes 1 M more rows (sync WAL, Arrow batches) and
   is killed (``os._exit``, no ``stop()``). This process then reopens the
   directory and times ``start()`` (recovery: load the checkpoint, replay the
   log); the recovered view is checked against Polars batch on all 2 M rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.demo_feed import reference_bars

sys.path.insert(0, str(Path(__file__).parent))
from ohlc import DDL, Reader, batches, check  # a sibling bench's workload

SETTINGS = ("none", "checkpoints", "+async WAL", "+sync WAL")
BARS = {"checkpoints": 0.01, "+async WAL": 0.02, "+sync WAL": 0.10}
KEYS_DDL = """
CREATE SOURCE events (k BIGINT NOT NULL, x BIGINT NOT NULL);
CREATE MATERIALIZED VIEW per_key AS
SELECT k, sum(x) AS total, count(*) AS n FROM events GROUP BY k
"""


# -- the disk -------------------------------------------------------------------
def fsync_latency(directory: Path, count: int = 300) -> dict[str, float]:
    """Append 4 KiB and fsync, ``count`` times: microseconds (median, p90, p99)."""
    path = directory / "fsync.probe"
    block = os.urandom(4096)
    times = []
    with open(path, "ab") as file:
        for _ in range(count):
            file.write(block)
            file.flush()
            start = time.perf_counter_ns()
            os.fsync(file.fileno())
            times.append((time.perf_counter_ns() - start) / 1e3)
    path.unlink()
    q = np.percentile(times, [50, 90, 99])
    return {"median": float(q[0]), "p90": float(q[1]), "p99": float(q[2])}


# -- 1. OHLC cost ---------------------------------------------------------------
def config(setting: str, directory: Path, interval: str) -> lp.Config:
    if setting == "none":
        return lp.Config()
    wal = {"checkpoints": None, "+async WAL": "async", "+sync WAL": "sync"}[setting]
    return lp.Config(data_dir=str(directory), checkpoint_interval=interval, wal_mode=wal)


def ohlc_run(setting: str, tables: list[pa.Table], expected: pl.DataFrame, directory: Path,
             interval: str) -> tuple[float, dict]:
    """Trades/s of one run, and the run's durability metrics."""
    shutil.rmtree(directory, ignore_errors=True)
    db = lp.open(config(setting, directory, interval))
    db.execute(DDL.format(n=1, unit="MINUTE"))
    reader = Reader(db.sink("ohlc_1min").subscribe())
    reader.start()
    db.start()
    source = db.source("trades")
    start = time.perf_counter_ns()
    for table in tables:
        source.push_arrow(table)
    source.close()
    db.stop()
    reader.join()
    end = reader.frames[-1][0]
    metrics = db.metrics()
    check(setting, reader.bars(), expected, metrics)
    rows = sum(t.num_rows for t in tables)
    return rows / ((end - start) / 1e9), metrics.get("durability", {})


def ohlc_costs(rows: int, repeat: int, directory: Path, interval: str) -> dict[str, list]:
    tables = batches(rows)
    expected = reference_bars(pl.DataFrame(pa.concat_tables(tables)), "1m")
    rates: dict[str, list[float]] = {s: [] for s in SETTINGS}
    last: dict[str, dict] = {}
    for _ in range(repeat):
        for setting in SETTINGS:
            rate, durable = ohlc_run(setting, tables, expected, directory / "ohlc", interval)
            rates[setting].append(rate)
            last[setting] = durable
    print(f"\n1. OHLC by {len(tables)} Arrow batches of 65,536 ({rows:,} trades), "
          f"checkpoint_interval={interval}, {repeat} rounds; M trades/s median [min, max], "
          "cost = 1 - rate / the same round's 'none':")
    for setting in SETTINGS:
        r = rates[setting]
        line = (f"   {setting:<12} {statistics.median(r) / 1e6:6.2f} M/s "
                f"[{min(r) / 1e6:.2f}, {max(r) / 1e6:.2f}]")
        if setting != "none":
            costs = [1 - a / b for a, b in zip(r, rates["none"], strict=True)]
            median = statistics.median(costs)
            verdict = "meets" if median < BARS[setting] else "misses"
            m = last[setting]
            line += (f"  cost {median:+.1%} [{min(costs):+.1%}, {max(costs):+.1%}] "
                     f"({verdict} < {BARS[setting]:.0%});  last run: checkpoint "
                     f"#{m['last_checkpoint']}, {m['fsyncs']} fsyncs, "
                     f"{m['wal_bytes_written'] / 1e6:.0f} MB logged")
        print(line)
    return rates


# -- 2. group commit ------------------------------------------------------------
def group_commit(threads: int, per_thread: int, directory: Path) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    db = lp.open(lp.Config(data_dir=str(directory), checkpoint_interval="10s", wal_mode="sync"))
    db.execute(KEYS_DDL)
    db.start()
    source = db.source("events")
    go = threading.Barrier(threads + 1)

    def produce(offset: int) -> None:
        push = source.push
        go.wait()
        for i in range(per_thread):
            push((offset + i, 1))

    workers = [threading.Thread(target=produce, args=(t * per_thread,)) for t in range(threads)]
    for w in workers:
        w.start()
    before = db.metrics()["durability"]["fsyncs"]
    go.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    seconds = time.perf_counter() - start
    fsyncs = db.metrics()["durability"]["fsyncs"] - before
    db.stop()
    rows = threads * per_thread
    return {"rows/s": rows / seconds, "fsyncs": fsyncs, "rows/fsync": rows / max(fsyncs, 1)}


# -- 3. checkpoint and recovery ---------------------------------------------------
def key_batches(keys: int, rows: int, seed: int, batch: int = 65_536) -> list[pa.Table]:
    """``rows`` rows: every key once first (when ``rows >= keys``), then random keys."""
    rng = np.random.default_rng(seed)
    k = np.concatenate([np.arange(min(keys, rows)), rng.integers(0, keys, max(rows - keys, 0))])
    x = rng.integers(-1000, 1000, rows)
    table = pa.table({"k": k, "x": x})
    return [table.slice(i, batch) for i in range(0, rows, batch)]


def crash_child(directory: str, keys: int, wal_rows: int) -> None:
    """Build the state, checkpoint it, log ``wal_rows`` more, die without stop()."""
    db = lp.open(lp.Config(data_dir=directory, checkpoint_interval="1h", wal_mode="sync"))
    db.execute(KEYS_DDL)
    db.start()
    source = db.source("events")
    for table in key_batches(keys, keys, seed=1):
        source.push_arrow(table)
    db.query("SELECT count(*) FROM per_key")  # a barrier: the engine has taken every row
    start = time.perf_counter()
    checkpoint = db.checkpoint()
    seconds = time.perf_counter() - start
    size = db.metrics()["durability"]["checkpoint_bytes"]
    for table in key_batches(keys, wal_rows, seed=2):
        source.push_arrow(table)  # sync: on disk when it returns
    wal = db.metrics()["durability"]["wal_bytes"]
    print(f"checkpoint {checkpoint} {seconds} {size} {wal}", flush=True)
    os._exit(0)  # a crash: no stop(), no final checkpoint


def recovery(keys: int, wal_rows: int, directory: Path) -> dict[str, float]:
    shutil.rmtree(directory, ignore_errors=True)
    child = subprocess.run([sys.executable, __file__, "--crash-child", str(directory),
                            str(keys), str(wal_rows)], capture_output=True, text=True, check=True)
    _, _, seconds, size, wal = child.stdout.split()
    db = lp.open(lp.Config(data_dir=str(directory), checkpoint_interval="1h", wal_mode="sync"))
    db.execute(KEYS_DDL)
    start = time.perf_counter()
    db.start()
    recover_s = time.perf_counter() - start
    replayed = db.metrics()["durability"]["replayed_rows"]
    got = db.query("SELECT k, total, n FROM per_key ORDER BY k")
    db.stop()
    rows = pl.concat([pl.DataFrame(t) for t in key_batches(keys, keys, 1) + key_batches(
        keys, wal_rows, 2)])
    expected = rows.group_by("k").agg(total=pl.col("x").sum(), n=pl.len()).sort("k")
    assert_frame_equal(got, expected, check_dtypes=False)
    return {"checkpoint s": float(seconds), "checkpoint MB": int(size) / 1e6,
            "wal MB": int(wal) / 1e6, "recovery s": recover_s, "replayed": replayed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, a smoke run")
    parser.add_argument("--rows", type=int, default=None, help="OHLC trades (default 10 M)")
    parser.add_argument("--repeat", type=int, default=5, help="OHLC rounds")
    parser.add_argument("--interval", default="100ms", help="checkpoint_interval for OHLC")
    parser.add_argument("--dir", default=None, help="where state goes (default: a temp dir)")
    parser.add_argument("--crash-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.crash_child:
        directory, keys, wal_rows = args.crash_child
        crash_child(directory, int(keys), int(wal_rows))
        return
    rows = args.rows or (1_000_000 if args.quick else 10_000_000)
    repeat = 2 if args.quick else args.repeat
    keys = 100_000 if args.quick else 1_000_000
    per_thread = 500 if args.quick else 5_000
    base = Path(tempfile.mkdtemp(prefix="lp-durability-", dir=args.dir))
    try:
        print(f"laminar_polars {lp.__version__}, polars {pl.__version__}, "
              f"pyarrow {pa.__version__}, Python {platform.python_version()}, "
              f"{platform.machine()}, {os.cpu_count()} CPUs, {dt.date.today()}; "
              f"state under {base}")
        print(f"command: python benches/durability.py {' '.join(sys.argv[1:])}".rstrip())
        disk = fsync_latency(base)
        print(f"\n0. this disk: append 4 KiB + fsync: median {disk['median']:.0f} us, "
              f"p90 {disk['p90']:.0f} us, p99 {disk['p99']:.0f} us")
        ohlc_costs(rows, repeat, base, args.interval)
        print(f"\n2. push one row at a time, wal_mode='sync' ({per_thread:,} rows per thread); "
              f"ceiling n / fsync median = n x {1e6 / disk['median']:,.0f} rows/s:")
        for threads in (4, 32):
            g = group_commit(threads, per_thread, base / "commit")
            verdict = "" if threads != 4 else (
                "  (meets > 100 k)" if g["rows/s"] > 100_000 else "  (misses > 100 k)")
            print(f"   {threads:>2} threads: {g['rows/s']:9,.0f} rows/s, {g['fsyncs']:,} fsyncs, "
                  f"{g['rows/fsync']:.1f} rows per fsync{verdict}")
        r = recovery(keys, keys, base / "keys")
        verdict = "meets" if r["recovery s"] < 2 else "misses"
        print(f"\n3. {keys:,} keys (sum, count per key): checkpoint {r['checkpoint s']:.2f} s, "
              f"{r['checkpoint MB']:.1f} MB; then {keys:,} rows logged ({r['wal MB']:.1f} MB of "
              f"log) and a crash;\n   start() recovers in {r['recovery s']:.2f} s "
              f"({verdict} < 2 s), {r['replayed']:,} rows replayed; view checked against Polars")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
