"""What the durability tests share: the pipeline, a child process that pushes
numbered rows and acknowledges them, and the oracle over the rows a database
holds after recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import polars as pl

import laminar_polars as lp

PACKAGE_ROOT = str(Path(lp.__file__).resolve().parent.parent)
SECOND = 1_000_000
KEYS = "abcdefg"

DDL = """
CREATE SOURCE events (p INTEGER NOT NULL, seq BIGINT NOT NULL, k VARCHAR NOT NULL,
                      v BIGINT, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
    WITH (buffer_size = 1024);
CREATE MATERIALIZED VIEW totals AS
    SELECT k, count(*) AS n, sum(v) AS total, count(DISTINCT seq) AS seqs
    FROM events GROUP BY k;
CREATE MATERIALIZED VIEW bars AS
    SELECT k, tumble(ts, INTERVAL '10' MILLISECOND) AS ws, count(*) AS n, sum(v) AS total
    FROM events GROUP BY k, tumble(ts, INTERVAL '10' MILLISECOND);
CREATE MATERIALIZED VIEW seen WITH (retention = 10000000) AS SELECT p, seq FROM events
"""


def row(p: int, seq: int) -> tuple:
    """Row ``seq`` of producer ``p``: event time advances with seq (100 us a row)."""
    return (p, seq, KEYS[(seq * 7 + p) % len(KEYS)], seq % 97, seq * 100)


def open_db(data_dir: Path, wal_mode: str | None, interval: str | None = "40ms") -> lp.LaminarDB:
    db = lp.open(lp.Config(data_dir=data_dir, checkpoint_interval=interval, wal_mode=wal_mode))
    db.execute(DDL)
    return db


CHILD = """
import sys, threading, time
sys.path.insert(0, {tests!r})
import pyarrow as pa
from helpers import open_db, row
from pathlib import Path
db = open_db(Path({data_dir!r}), {wal_mode!r}, {interval!r})
db.start()
method, producers, rows, exit_after = {method!r}, {producers!r}, {rows!r}, {exit_after!r}
lock = threading.Lock()
def produce(p):
    src = db.source("events") if p == 0 else root.clone()
    seq = 0
    while seq < rows:
        n = 1 if method == "push" else 1 + seq % 13
        batch = [row(p, s) for s in range(seq, min(seq + n, rows))]
        if method == "push":
            src.push(batch[0])
        elif method == "push_batch":
            src.push_batch(batch)
        else:
            cols = list(zip(*batch))
            src.push_arrow(pa.table({{"p": pa.array(cols[0], pa.int32()), "seq": cols[1],
                                     "k": cols[2], "v": cols[3],
                                     "ts": pa.array(cols[4], pa.timestamp("us"))}}))
        seq += len(batch)
        with lock:
            print("ack", p, seq, flush=True)
        if seq % 200 < n:
            time.sleep(0.002)  # spread the run over several checkpoints
root = db.source("events")
threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
for t in threads: t.start()
for t in threads: t.join()
print("done", flush=True)
if exit_after:
    import os
    os._exit(0)  # no stop(): as a crash, once every push returned
db.stop()
print("stopped", flush=True)
"""


def run_child(data_dir: Path, wal_mode: str | None, method: str, producers: int, rows: int,
              kill_after: int | None, exit_after: bool = False,
              interval: str | None = "40ms") -> dict[int, int]:
    """Push numbered rows from a child process; with ``kill_after``, SIGKILL it
    once that many acknowledgements arrived. Returns, per producer, the
    highest acknowledged seq (rows 0..seq-1 were acknowledged)."""
    code = textwrap.dedent(CHILD.format(
        tests=str(Path(__file__).parent), data_dir=str(data_dir), wal_mode=wal_mode,
        interval=interval, method=method, producers=producers, rows=rows,
        exit_after=exit_after))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    acked: dict[int, int] = dict.fromkeys(range(producers), 0)
    lines: list[str] = []
    with subprocess.Popen([sys.executable, "-u", "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=env) as child:
        assert child.stdout is not None
        killed = False
        timer = threading.Timer(120, child.kill)  # only if it hangs
        timer.start()
        try:
            count = 0
            for line in child.stdout:
                lines.append(line)
                fields = line.split()
                if line.endswith("\n") and len(fields) == 3 and fields[0] == "ack":
                    # (a line the kill cut short is no acknowledgement)
                    acked[int(fields[1])] = int(fields[2])
                    count += 1
                    if kill_after is not None and count >= kill_after and not killed:
                        child.send_signal(signal.SIGKILL)
                        killed = True
            child.wait()
        finally:
            timer.cancel()
    if kill_after is None:
        assert child.returncode == 0, "".join(lines[-30:])
    return acked


def recovered(data_dir: Path, wal_mode: str | None, interval: str | None = "40ms"
              ) -> tuple[lp.LaminarDB, dict[str, pl.DataFrame]]:
    """Reopen ``data_dir`` as the application would, start (recovering),
    stop, and read every view."""
    db = open_db(data_dir, wal_mode, interval)
    db.start()
    db.stop()
    views = {name: db.query(f"SELECT * FROM {name}") for name in ("totals", "bars", "seen")}
    return db, views


def oracle(seen: pl.DataFrame) -> dict[str, pl.DataFrame]:
    """What totals and bars must hold over the rows in ``seen`` (p, seq)."""
    rows = pl.DataFrame([row(p, s) for p, s in seen.select("p", "seq").rows()],
                        schema={"p": pl.Int32, "seq": pl.Int64, "k": pl.String, "v": pl.Int64,
                                "ts": pl.Int64}, orient="row")
    rows = rows.with_columns(pl.col("ts").cast(pl.Datetime("us")))
    totals = rows.group_by("k").agg(n=pl.len(), total=pl.col("v").sum(),
                                    seqs=pl.col("seq").n_unique())
    bars = (rows.with_columns(ws=pl.col("ts").dt.truncate("10ms"))
            .group_by("k", "ws").agg(n=pl.len(), total=pl.col("v").sum()))
    return {"totals": totals, "bars": bars}


def same(got: pl.DataFrame, expected: pl.DataFrame) -> bool:
    if got.height != expected.height:
        return False
    columns = expected.columns
    got = got.select(columns).cast(dict(expected.schema)).sort(columns)
    return got.equals(expected.sort(columns))
