"""Many producers x many subscribers: no loss, no duplicate, per-producer order."""

from __future__ import annotations

import threading

import polars as pl
import pytest
from conftest import read_all

import laminar_polars as lp

PRODUCERS = 4
SUBSCRIBERS = 3
ROWS_EACH = 5_000


def _run(db: lp.LaminarDB, backpressure: str, wait: str = "spin_yield") -> tuple[list, int]:
    db.execute(
        "CREATE SOURCE events (producer INTEGER NOT NULL, seq BIGINT NOT NULL, tag VARCHAR) "
        f"WITH (buffer_size = 256, backpressure = '{backpressure}', wait_strategy = '{wait}');"
        "CREATE SINK out FROM events"
    )
    subs = [db.sink("out").subscribe() for _ in range(SUBSCRIBERS)]
    received: list[pl.DataFrame | None] = [None] * SUBSCRIBERS

    def read(i: int) -> None:
        received[i] = read_all(subs[i])

    readers = [threading.Thread(target=read, args=(i,)) for i in range(SUBSCRIBERS)]
    for t in readers:
        t.start()
    db.start()
    root = db.source("events")
    handles = [root] + [root.clone() for _ in range(PRODUCERS - 1)]
    assert root.channel == "mpsc"
    accepted = [0] * PRODUCERS

    def produce(p: int) -> None:
        for i in range(ROWS_EACH):
            row = (p, i, f"p{p}-{i}")
            if backpressure == "reject":
                while not handles[p].try_push(row):
                    pass
            else:
                handles[p].push(row)
            accepted[p] += 1

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for t in producers:
        t.start()
    for t in producers:
        t.join()
    dropped = db.metrics()["sources"]["events"]["dropped"]
    db.stop()
    for t in readers:
        t.join()
    assert sum(accepted) == PRODUCERS * ROWS_EACH
    return received, dropped


def _check_per_producer(frame: pl.DataFrame) -> None:
    assert frame.select(pl.struct("producer", "seq").is_unique().all()).item()
    for (producer,), group in frame.group_by("producer", maintain_order=True):
        seqs = group["seq"].to_list()
        assert seqs == sorted(seqs), f"producer {producer} out of order"
        assert group["tag"].to_list() == [f"p{producer}-{s}" for s in seqs]


@pytest.mark.parametrize("backpressure", ["block", "reject"])
@pytest.mark.parametrize("wait", ["spin", "spin_yield", "park"])
def test_no_loss_no_duplicate(db, backpressure, wait):
    received, dropped = _run(db, backpressure, wait)
    assert dropped == 0
    for frame in received:
        assert frame.height == PRODUCERS * ROWS_EACH
        _check_per_producer(frame)
        for p in range(PRODUCERS):
            assert frame.filter(pl.col("producer") == p)["seq"].to_list() == list(range(ROWS_EACH))


def test_drop_oldest_loses_exactly_the_reported_rows(db):
    received, dropped = _run(db, "drop_oldest")
    for frame in received:
        assert frame.height + dropped == PRODUCERS * ROWS_EACH
        _check_per_producer(frame)
    assert received[0].equals(received[1])


def test_drop_oldest_without_consumer_keeps_the_newest(db):
    db.execute("CREATE SOURCE d (i BIGINT) WITH (buffer_size = 8, backpressure = 'drop_oldest')")
    sub = db.sink("d").subscribe()
    src = db.source("d")
    for i in range(100):
        src.push((i,))
    assert db.metrics()["sources"]["d"]["dropped"] == 92
    db.stop()
    assert read_all(sub)["i"].to_list() == list(range(92, 100))


def test_spsc_to_mpsc_upgrade_while_rows_in_flight(db):
    db.execute("CREATE SOURCE u (producer INTEGER, seq BIGINT) WITH (buffer_size = 1024)")
    sub = db.sink("u").subscribe()
    db.start()
    first = db.source("u")
    assert first.channel == "spsc"
    stop_at = threading.Event()
    counts = [0, 0]

    def produce(handle: lp.Source, p: int, n: int) -> None:
        for i in range(n):
            handle.push((p, i))
            counts[p] += 1
            if p == 0 and i == n // 2:
                stop_at.set()

    t0 = threading.Thread(target=produce, args=(first, 0, 20_000))
    t0.start()
    stop_at.wait(30)
    second = first.clone()  # upgrade while producer 0 is mid-stream
    assert first.channel == second.channel == "mpsc"
    t1 = threading.Thread(target=produce, args=(second, 1, 20_000))
    t1.start()
    t0.join()
    t1.join()
    db.stop()
    got = read_all(sub)
    for p in (0, 1):
        assert got.filter(pl.col("producer") == p)["seq"].to_list() == list(range(20_000))
    assert db.topology()["sources"]["u"]["channel"] == "mpsc"
