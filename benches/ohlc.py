"""OHLC pipeline benchmark (SPEC §3 view, SPEC §10 bars): end-to-end throughput,
push → subscriber latency at window close, and memory against rows seen.

Reproduce:  python benches/ohlc.py                 (10 M trades; a few minutes)
            python benches/ohlc.py --quick         (1 M trades, short latency run)
            python benches/ohlc.py --rows 2000000  (any size)

Workload: 100 symbols, one trade per millisecond of event time, each up to 50 ms
out of order (``ts = i ms + U[0, 50 ms]``), watermark delay 100 ms, so no trade
is late (checked). The SPEC §3 view ``ohlc_1min`` (1-minute tumbling bars,
EMIT ON WINDOW CLOSE) is fed

  (a) one row per ``Source.push`` (tuples prepared beforehand), and
  (b) 65,536-row pyarrow tables per ``Source.push_arrow``,

and throughput is trades / (time from the first push to the last bar received by
a subscriber thread, after ``source.close()`` and ``db.stop()``). References in
the same run, on the same rows: Polars batch (sort, then ``group_by_dynamic``,
excluding the frame's construction) and a hand-written Python dict-of-windows
loop that closes windows on the watermark as the engine does. Every figure is
the best of ``--repeat`` runs (default 3; the machine may be shared). The
streamed bars must equal the Polars batch bars (asserted) before any figure is
printed.

Latency: the same view, rows pushed one by one in 1 ms bursts paced to 100 k
rows/s, on two clocks. 'live': a live feed, event time advancing with the wall
clock (10 us per trade), 100 ms bars, 10 window closes a second; this is the
SPEC bar's setting. 'compressed': the throughput feed (1 ms per trade) replayed
at 100 k rows/s, so event time runs 100x the wall clock; 1-second bars, 100
closes a second (a stress case). For each bar: the time the subscriber thread
received it minus the time the push of the row that moved the watermark past
the bar's window end returned. Windows closed in the first second (warm-up)
are not counted.

Memory: 1 M and 10 M trades through (b) in child processes that generate each
batch on the fly (input memory is constant), reporting the child's peak RSS
(``VmHWM``, else ``resource.getrusage``) and the view's largest ``state_rows``
(merged partials: one per key and open window) and ``pending_rows`` (input rows
taken but not merged yet, at most one micro-batch beyond the cap) seen in metrics.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time

import numpy as np
import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.demo_feed import reference_bars

T0 = 1_704_067_200_000_000  # 2024-01-01 00:00 in microseconds
SYMBOLS = [f"S{i:03d}" for i in range(100)]
BATCH = 65_536
DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
) WITH (buffer_size = 1048576);
CREATE MATERIALIZED VIEW ohlc_1min AS
SELECT symbol,
       tumble(ts, INTERVAL '{n}' {unit})     AS window_start,
       tumble_end(ts, INTERVAL '{n}' {unit}) AS window_end,
       first_value(price) AS open, max(price) AS high,
       min(price) AS low, last_value(price) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '{n}' {unit})
EMIT ON WINDOW CLOSE
"""
DELAY_US = 100_000


# -- the workload ---------------------------------------------------------------
def trades(first: int, n: int, seed: int = 0, spacing_us: int = 1000) -> dict[str, np.ndarray]:
    """Rows first .. first+n-1 of the feed (deterministic per block of rows)."""
    rng = np.random.default_rng([seed, first])
    index = np.arange(first, first + n, dtype=np.int64)
    return {
        "code": rng.integers(0, len(SYMBOLS), n, dtype=np.int32),
        "price": np.round(rng.uniform(100.0, 200.0, n), 2),
        "qty": rng.integers(1, 1000, n, dtype=np.int64),
        "ts": T0 + index * spacing_us + rng.integers(0, 50_001, n, dtype=np.int64),
    }


def to_arrow(cols: dict[str, np.ndarray]) -> pa.Table:
    symbol = pa.DictionaryArray.from_arrays(pa.array(cols["code"]), pa.array(SYMBOLS))
    return pa.table({"symbol": symbol.cast(pa.string()), "price": cols["price"],
                     "qty": cols["qty"], "ts": pa.array(cols["ts"], pa.timestamp("us"))})


def batches(n_rows: int, spacing_us: int = 1000) -> list[pa.Table]:
    return [to_arrow(trades(i, min(BATCH, n_rows - i), spacing_us=spacing_us))
            for i in range(0, n_rows, BATCH)]


def to_tuples(tables: list[pa.Table]) -> list[tuple]:
    rows: list[tuple] = []
    for t in tables:
        rows.extend(zip(t["symbol"].to_pylist(), t["price"].to_pylist(),
                        t["qty"].to_pylist(), pc_micros(t["ts"]).tolist(), strict=True))
    return rows


def pc_micros(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.int64()).to_numpy()


# -- the engine ---------------------------------------------------------------
class Reader(threading.Thread):
    """Subscriber thread: keeps every frame and the perf_counter_ns it arrived."""

    def __init__(self, sub: lp.Subscription) -> None:
        super().__init__(daemon=True)
        self.sub = sub
        self.frames: list[tuple[int, pl.DataFrame]] = []

    def run(self) -> None:
        for frame in self.sub:
            self.frames.append((time.perf_counter_ns(), frame))

    def bars(self) -> pl.DataFrame:
        return pl.concat([f for _, f in self.frames]) if self.frames else pl.DataFrame()


WORKERS = 1  # Config.workers of every database this bench opens (--workers)


def open_db(bar: str = "1m") -> tuple[lp.LaminarDB, lp.Source, Reader]:
    n, unit = {"1m": (1, "MINUTE"), "1s": (1, "SECOND"), "100ms": (100, "MILLISECOND")}[bar]
    db = lp.open(lp.Config(workers=WORKERS))
    db.execute(DDL.format(n=n, unit=unit))
    reader = Reader(db.sink("ohlc_1min").subscribe())
    reader.start()
    db.start()
    return db, db.source("trades"), reader


def stream(feed: str, data: list) -> tuple[float, pl.DataFrame, dict]:
    """Push everything, close, stop; seconds from first push to last bar."""
    db, src, reader = open_db()
    start = time.perf_counter_ns()
    if feed == "push":
        push = src.push
        for row in data:
            push(row)
    else:
        for table in data:
            src.push_arrow(table)
    src.close()
    db.stop()
    reader.join()
    end = reader.frames[-1][0] if reader.frames else time.perf_counter_ns()
    return (end - start) / 1e9, reader.bars(), db.metrics()


def check(name: str, streamed: pl.DataFrame, expected: pl.DataFrame, metrics: dict) -> None:
    late = metrics["sources"]["trades"]["late"]
    assert late == 0, f"{name}: {late} rows counted late; the workload has none"
    got = streamed.select(expected.columns).sort("window_start", "symbol")
    assert_frame_equal(got, expected, check_dtypes=False)


# -- references ---------------------------------------------------------------
def dict_loop(rows: list[tuple], width: int = 60_000_000, delay: int = DELAY_US) -> list:
    """A hand-written Python OHLC operator: dict of open windows, closed on the watermark."""
    windows: dict[int, dict[str, list]] = {}
    out: list = []
    watermark = -(1 << 62)
    next_end = 1 << 62
    for symbol, price, qty, ts in rows:
        if ts < watermark:
            continue  # late
        start = ts - ts % width
        bucket = windows.get(start)
        if bucket is None:
            bucket = windows[start] = {}
            next_end = min(next_end, start + width)
        state = bucket.get(symbol)
        if state is None:
            bucket[symbol] = [ts, price, price, price, ts, price, qty, 1]
        else:
            if ts < state[0]:
                state[0] = ts
                state[1] = price
            if price > state[2]:
                state[2] = price
            if price < state[3]:
                state[3] = price
            if ts >= state[4]:
                state[4] = ts
                state[5] = price
            state[6] += qty
            state[7] += 1
        if ts - delay > watermark:
            watermark = ts - delay
            if watermark >= next_end:
                for begin in sorted(w for w in windows if w + width <= watermark):
                    for sym, s in windows.pop(begin).items():
                        out.append((sym, begin, begin + width, s[1], s[2], s[3], s[5], s[6], s[7]))
                next_end = min((w + width for w in windows), default=1 << 62)
    for begin in sorted(windows):  # end of input: every window closes
        for sym, s in windows[begin].items():
            out.append((sym, begin, begin + width, s[1], s[2], s[3], s[5], s[6], s[7]))
    return out


def references(tables: list[pa.Table], rows: list[tuple] | None, repeat: int) -> dict:
    frame = pl.DataFrame(pa.concat_tables(tables))
    polars_s = dict_s = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        expected = reference_bars(frame, "1m")
        polars_s = min(polars_s, time.perf_counter() - start)
    result = {"expected": expected, "polars s": polars_s}
    for _ in range(repeat if rows is not None else 0):
        start = time.perf_counter()
        bars = dict_loop(rows)  # type: ignore[arg-type]
        dict_s = min(dict_s, time.perf_counter() - start)
        got = pl.DataFrame(bars, schema=["symbol", "window_start", "window_end", "open", "high",
                                         "low", "close", "volume", "trades"], orient="row")
        got = got.with_columns(pl.col("window_start", "window_end").cast(pl.Datetime("us")))
        assert_frame_equal(got.sort("window_start", "symbol"), expected, check_dtypes=False)
        result["dict s"] = dict_s
    return result


# -- latency --------------------------------------------------------------------
# Latency clocks: 'live' is a live feed, event time advancing with the wall
# clock (10 us per trade at 100 k trades/s), 100 ms bars, 10 closes a second;
# 'compressed' replays the throughput feed (1 ms per trade) at 100 k trades/s,
# so event time runs 100x the wall clock: 1-second bars, 100 closes a second.
CLOCKS = {"live": (10, "100ms", 100_000), "compressed": (1000, "1s", 1_000_000)}


def latency(seconds: float, clock: str, rate: int = 100_000) -> dict[str, float]:
    spacing_us, bar, width = CLOCKS[clock]
    n = int(seconds * rate)
    tables = batches(n, spacing_us)
    ts = np.concatenate([pc_micros(t["ts"]) for t in tables])
    rows = to_tuples(tables)
    # the row whose push moved the watermark (running max - delay) to >= a window end
    runmax = np.maximum.accumulate(ts)
    ends = np.arange((ts.min() // width + 1) * width, runmax[-1] - DELAY_US + 1, width)
    closer = np.searchsorted(runmax, ends + DELAY_US, side="left")
    burst = rate // 1000  # rows per millisecond
    cuts = np.unique(np.concatenate([np.arange(burst, n, burst), closer + 1, [n]]))
    pushed_at = np.zeros(len(cuts), dtype=np.int64)
    db, src, reader = open_db(bar)
    push = src.push
    begin = 0
    start = time.perf_counter_ns()
    for k, cut in enumerate(cuts.tolist()):
        due = start + begin * 1_000_000_000 // rate
        while (now := time.perf_counter_ns()) < due:
            time.sleep(max(due - now, 0) / 1e9)
        for row in rows[begin:cut]:
            push(row)
        pushed_at[k] = time.perf_counter_ns()
        begin = cut
    achieved = n / ((time.perf_counter_ns() - start) / 1e9)
    time.sleep(0.05)
    src.close()
    db.stop()
    reader.join()
    # window end (micros) -> when the push of the row that closed it returned
    closed_at = dict(zip(ends.tolist(), pushed_at[np.searchsorted(cuts, closer + 1)].tolist(),
                         strict=True))
    samples = []
    warm = start + 1_000_000_000  # the first second is warm-up (Polars' pools, caches)
    for received, frame in reader.frames:
        for end in frame["window_end"].dt.epoch("us").to_list():
            # windows closed by source.close() have no closer row
            if end in closed_at and closed_at[end] >= warm:
                samples.append(received - closed_at[end])
    values = np.asarray(samples, dtype=np.float64) / 1e3  # µs
    return {"rows/s achieved": achieved, "bars timed": len(values),
            "p50 us": float(np.percentile(values, 50)), "p90 us": float(np.percentile(values, 90)),
            "p99 us": float(np.percentile(values, 99)),
            "max us": float(values.max())}


# -- memory (child processes) ---------------------------------------------------
def peak_rss_mib(field: str = "VmHWM") -> float:
    """This process's peak RSS: VmHWM (reset by exec) where /proc has it, else
    ru_maxrss (which on Linux keeps the forking parent's peak across exec).
    ``field="VmRSS"``: the current RSS (0 without /proc)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 if field == "VmHWM" else 0


def memory_child(n_rows: int) -> None:
    db, src, reader = open_db()
    baseline = peak_rss_mib()
    state_rows = pending_rows = 0
    rss = []  # current RSS after every tenth of the run
    n_batches = -(-n_rows // BATCH)  # ceiling division
    every = max(1, -(-n_batches // 10))
    for k, first in enumerate(range(0, n_rows, BATCH)):
        src.push_arrow(to_arrow(trades(first, min(BATCH, n_rows - first))))
        view = db.metrics().get("views", {}).get("ohlc_1min", {})
        state_rows = max(state_rows, view.get("state_rows") or 0)
        pending_rows = max(pending_rows, view.get("pending_rows") or 0)
        if (k + 1) % every == 0:
            rss.append(round(peak_rss_mib("VmRSS")))
    src.close()
    db.stop()
    reader.join()
    print(json.dumps({
        "rows": n_rows, "bars": sum(f.height for _, f in reader.frames),
        "rss at start MiB": baseline,
        "peak rss MiB": peak_rss_mib(),
        "max state_rows": state_rows, "max pending_rows": pending_rows,
        "rss MiB over the run": rss,
    }))


def memory(n_rows: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--memory-child", str(n_rows)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- main -----------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, help="trades per throughput run (default 10 M)")
    parser.add_argument("--quick", action="store_true", help="1 M trades, 2 s latency run")
    parser.add_argument("--latency-seconds", type=float,
                        help="paced run length per clock (default 30 live, 10 compressed)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each throughput figure, best counts (default 3)")
    parser.add_argument("--skip", default="", help="comma list of: push,arrow,latency,memory")
    parser.add_argument("--workers", type=int, default=1,
                        help="Config.workers: keyed operators split across this many threads")
    parser.add_argument("--memory-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    if args.memory_child:
        return memory_child(args.memory_child)
    n = args.rows or (1_000_000 if args.quick else 10_000_000)
    lat_s = args.latency_seconds or (2.0 if args.quick else None)
    skip = set(filter(None, args.skip.split(",")))
    command = " ".join(["python", "benches/ohlc.py", *sys.argv[1:]])

    print(f"# benches/ohlc.py  {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# python {platform.python_version()}, polars {pl.__version__}, "
          f"pyarrow {pa.__version__}, laminar_polars {lp.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} cores")
    print(f"# reproduce: {command}")
    print(f"# {n:,} trades, {len(SYMBOLS)} symbols, 1 ms apart, <= 50 ms out of order, "
          f"watermark delay 100 ms, 1-minute bars\n", flush=True)

    tables = batches(n)
    rows = to_tuples(tables) if "push" not in skip else None
    ref = references(tables, rows, args.repeat)
    expected = ref["expected"]
    rates = {"Polars batch group_by_dynamic": n / ref["polars s"]}
    if rows is not None:
        rates["Python dict loop"] = n / ref["dict s"]
    print(f"{len(expected):,} bars; references on the same rows (same run, best of "
          f"{args.repeat}):")
    for name, value in rates.items():
        print(f"  {name:<36}{value / 1e6:>8.2f} M trades/s")

    measured: dict[str, float] = {}
    runs = [("(a) push, one row per call", "push", rows)] if rows is not None else []
    if "arrow" not in skip:
        runs.append((f"(b) push_arrow, {BATCH:,}-row tables", "arrow", tables))
    for name, feed, data in runs:
        for _ in range(args.repeat):  # a fresh database each time; the best run counts
            seconds, bars, metrics = stream(feed, data)
            check(feed, bars, expected, metrics)
            measured[name] = max(measured.get(name, 0.0), n / seconds)
    del rows, runs
    print(f"engine, end to end to a subscriber (best of {args.repeat}; every run's bars "
          "checked equal to Polars batch):")
    for name, value in measured.items():
        ratios = ", ".join(f"{value / ref:.2f}x {label}" for label, ref in (
            ("dict loop", rates.get("Python dict loop")),
            ("Polars batch", rates["Polars batch group_by_dynamic"])) if ref)
        print(f"  {name:<36}{value / 1e6:>8.2f} M trades/s  ({ratios})")
    del tables

    lat = {}
    if "latency" not in skip:
        print("\nlatency push -> subscriber at window close, rows pushed one by one in 1 ms "
              "bursts paced to 100 k rows/s:")
        for clock, (spacing, bar, _) in CLOCKS.items():
            seconds = lat_s or (30.0 if clock == "live" else 10.0)
            lat[clock] = r = latency(seconds, clock)
            print(f"  {clock:<10} clock ({spacing} us of event time per trade, {bar} bars, "
                  f"{seconds:.0f} s, achieved {r['rows/s achieved'] / 1e3:.1f} k rows/s, "
                  f"{r['bars timed']:,} bars): p50 {r['p50 us']:.0f} us, p90 {r['p90 us']:.0f} "
                  f"us, p99 {r['p99 us']:.0f} us, max {r['max us']:.0f} us", flush=True)
    mem = []
    if "memory" not in skip:
        print("\nmemory (child process per size, batches generated on the fly):")
        for size in ((100_000, 1_000_000) if args.quick else (1_000_000, 10_000_000)):
            m = memory(size)
            mem.append(m)
            print(f"  {m['rows']:>12,} trades: peak RSS {m['peak rss MiB']:8.1f} MiB "
                  f"(after open + start, before any push: {m['rss at start MiB']:.1f} MiB), "
                  f"max state_rows {m['max state_rows']:,}, max pending_rows "
                  f"{m['max pending_rows']:,}, bars {m['bars']:,}")
            print(f"  {'':>12}  current RSS (MiB) after each tenth: {m['rss MiB over the run']}")

    bars = {}
    if "(a) push, one row per call" in measured:
        bars["(a) > 4 M trades/s"] = measured["(a) push, one row per call"] > 4e6
    if measured.get(f"(b) push_arrow, {BATCH:,}-row tables"):
        bars["(b) > 25 M trades/s"] = measured[f"(b) push_arrow, {BATCH:,}-row tables"] > 25e6
    if lat:
        bars["window-close p99 < 1 ms (live clock)"] = lat["live"]["p99 us"] < 1000
    if len(mem) == 2:
        bars["memory bounded (10x rows, < 1.5x RSS)"] = (
            mem[1]["peak rss MiB"] < 1.5 * mem[0]["peak rss MiB"])
    print("\nbars: " + ", ".join(f"{k}: {'met' if v else 'NOT met'}" for k, v in bars.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
