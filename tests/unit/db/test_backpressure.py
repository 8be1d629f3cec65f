"""A full ring: reject raises Full, block waits (GIL released), drop_oldest drops the oldest.

Ring rows and queued Arrow-batch rows share one capacity, whichever filled it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pyarrow as pa
import pytest
from conftest import read_all

import laminar_polars as lp

DEADLINE = 30.0


def _source(db, backpressure: str, wait: str = "spin_yield", size: int = 4) -> lp.Source:
    db.execute(f"CREATE SOURCE q (i BIGINT NOT NULL, s VARCHAR) WITH (buffer_size = {size}, "
               f"backpressure = '{backpressure}', wait_strategy = '{wait}')")
    return db.source("q")


def _stats(db) -> dict:
    return db.metrics()["sources"]["q"]


class Producer(threading.Thread):
    """Pushes rows start..stop-1 on its own handle, recording progress and any error."""

    def __init__(self, src: lp.Source, start: int, stop: int) -> None:
        super().__init__(daemon=True)
        self.src, self.range, self.done, self.error = src, range(start, stop), [], None

    def run(self) -> None:
        try:
            for i in self.range:
                self.src.push((i, f"r{i}"))
                self.done.append(i)
        except BaseException as exc:  # checked by the test
            self.error = exc


def _wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not condition():
        assert time.monotonic() < deadline, f"deadline passed waiting for {what}"
        time.sleep(0.005)


def _blocked_producer(src: lp.Source, start: int, stop: int) -> Producer:
    """A producer that has filled the ring and is blocked in push(start + free room)."""
    room = src.capacity - src.pending
    producer = Producer(src, start, stop)
    producer.start()
    _wait_until(lambda: len(producer.done) == room and src.pending == src.capacity,
                "the ring to fill")
    producer.join(0.1)
    assert producer.is_alive() and len(producer.done) == room
    return producer


def test_reject_full_ring_raises_full_and_counts(db):
    src = _source(db, "reject")
    sub = db.sink("q").subscribe()
    for i in range(4):
        src.push((i, f"r{i}"))
    for i in (4, 5):
        with pytest.raises(lp.Full, match="reject"):
            src.push((i, "no"))
    assert src.try_push((6, "no")) is False
    assert _stats(db)["rejected"] == 3
    assert src.has_capacity() is False
    assert src.pending == src.capacity == 4
    assert _stats(db)["pending"] == 4 and _stats(db)["pushed"] == 4
    db.start()
    db.stop()
    got = read_all(sub)
    assert got["i"].to_list() == [0, 1, 2, 3]
    assert got["s"].to_list() == ["r0", "r1", "r2", "r3"]


def test_reject_push_batch_larger_than_free_room_enqueues_nothing(db):
    src = _source(db, "reject")
    sub = db.sink("q").subscribe()
    src.push_batch([(0, "a"), (1, "b")])
    with pytest.raises(lp.Full):
        src.push_batch([(2, "x"), (3, "y"), (4, "z")])
    assert src.pending == 2
    assert _stats(db)["rejected"] == 3
    src.push_batch([(5, "c"), (6, "d")])  # exactly the free room
    assert src.pending == 4 and not src.has_capacity()
    db.stop()
    assert read_all(sub)["i"].to_list() == [0, 1, 5, 6]


def _table(values: list[int], s: str = "b") -> pa.Table:
    return pa.table({"i": values, "s": [s] * len(values)})


class ArrowPusher(threading.Thread):
    """Calls push_arrow(table) on its own handle; `returned` is set once it has."""

    def __init__(self, src: lp.Source, table: pa.Table) -> None:
        super().__init__(daemon=True)
        self.src, self.table = src.clone(), table
        self.returned, self.error = threading.Event(), None

    def run(self) -> None:
        try:
            self.src.push_arrow(self.table)
        except BaseException as exc:  # checked by the test
            self.error = exc
        self.returned.set()


def _start_later(db) -> threading.Thread:
    """Start the engine from another thread (it drains the full ring)."""
    starter = threading.Thread(target=db.start, daemon=True)
    starter.start()
    return starter


@pytest.mark.parametrize("first", ["rows", "batch"])
def test_reject_full_ring_refuses_both_rows_and_batches(db, first):
    src = _source(db, "reject")
    sub = db.sink("q").subscribe()
    if first == "rows":
        src.push_batch([(i, "r") for i in range(4)])
    else:
        src.push_arrow(_table([0, 1, 2, 3], "a"))
    assert src.pending == src.capacity and not src.has_capacity()
    assert src.try_push((9, "x")) is False
    with pytest.raises(lp.Full, match="reject"):
        src.push((9, "x"))
    with pytest.raises(lp.Full, match="does not fit"):
        src.push_arrow(_table([9], "x"))
    with pytest.raises(lp.Full):
        src.push_batch([(9, "x")])
    assert src.pending == src.capacity
    assert _stats(db)["rejected"] == 4 and _stats(db)["dropped"] == 0
    db.stop()
    assert read_all(sub)["i"].to_list() == [0, 1, 2, 3]


def test_reject_partly_full_ring_counts_rows_and_batches_together(db):
    src = _source(db, "reject", size=8)
    src.push_arrow(_table([0, 1, 2]))
    src.push((3, "r"))
    src.push((4, "r"))
    with pytest.raises(lp.Full):
        src.push_arrow(_table([5, 6, 7, 8]))  # 5 pending + 4 > 8
    src.push_arrow(_table([5, 6, 7]))  # exactly the room left
    assert src.pending == src.capacity == 8
    assert src.try_push((9, "x")) is False


def test_reject_batch_larger_than_capacity_is_refused_even_when_empty(db):
    src = _source(db, "reject")
    with pytest.raises(lp.Full, match="larger than the source's capacity"):
        src.push_arrow(_table(list(range(5))))
    assert src.pending == 0 and _stats(db)["rejected"] == 5
    src.push_arrow(_table(list(range(4))))  # the capacity itself fits
    assert src.pending == src.capacity


def test_reject_full_string_arena_says_so(db):
    src = _source(db, "reject")
    big = "x" * 30_000  # the arena is 64 KiB at this size: two such rows fill it
    src.push((0, big))
    src.push((1, big))
    assert src.pending == 2 and src.has_capacity()
    with pytest.raises(lp.Full) as info:
        src.push((2, big))
    assert "string" in str(info.value).lower()


def test_block_producer_waits_until_start(db):
    src = _source(db, "block")
    sub = db.sink("q").subscribe()
    producer = _blocked_producer(src, 0, 50)
    db.start()
    producer.join(DEADLINE)
    assert not producer.is_alive() and producer.error is None
    db.stop()
    got = read_all(sub)
    assert got["i"].to_list() == list(range(50))
    assert got["s"].to_list() == [f"r{i}" for i in range(50)]
    assert _stats(db)["rejected"] == 0 and _stats(db)["dropped"] == 0


def test_block_push_arrow_waits_for_a_ring_full_of_rows(db):
    src = _source(db, "block")
    sub = db.sink("q").subscribe()
    src.push_batch([(i, f"r{i}") for i in range(4)])
    pusher = ArrowPusher(src, _table([100, 101, 102]))
    pusher.start()
    pusher.join(0.1)
    assert pusher.is_alive() and not pusher.returned.is_set(), "push_arrow did not wait"
    assert src.pending == src.capacity
    with pytest.raises(lp.Full, match="wait=False"):
        src.push_arrow(_table([9]), wait=False)
    starter = _start_later(db)
    assert pusher.returned.wait(DEADLINE), "push_arrow was not released by the engine"
    assert pusher.error is None
    starter.join(DEADLINE)
    db.stop()
    assert read_all(sub)["i"].to_list() == [0, 1, 2, 3, 100, 101, 102]
    assert _stats(db)["dropped"] == 0 and _stats(db)["rejected"] == 1


@pytest.mark.parametrize("wait", ["spin_yield", "park"])
def test_block_push_waits_for_a_ring_full_of_batch_rows(db, wait):
    src = _source(db, "block", wait=wait)
    sub = db.sink("q").subscribe()
    src.push_arrow(_table([100, 101]))
    src.push_arrow(_table([102, 103]))
    assert src.pending == src.capacity
    assert src.try_push((9, "x")) is False
    producer = _blocked_producer(src, 0, 10)  # blocked on its very first row
    assert producer.done == []
    starter = _start_later(db)
    producer.join(DEADLINE)
    assert not producer.is_alive() and producer.error is None
    starter.join(DEADLINE)
    db.stop()
    assert read_all(sub)["i"].to_list() == [100, 101, 102, 103, *range(10)]
    assert _stats(db)["dropped"] == 0


def test_block_batch_larger_than_capacity_waits_for_an_empty_ring(db):
    src = _source(db, "block")
    sub = db.sink("q").subscribe()
    src.push((0, "r"))
    pusher = ArrowPusher(src, _table(list(range(100, 110))))
    pusher.start()
    pusher.join(0.1)
    assert pusher.is_alive() and not pusher.returned.is_set()
    assert src.pending == 1
    starter = _start_later(db)
    assert pusher.returned.wait(DEADLINE) and pusher.error is None
    starter.join(DEADLINE)
    db.stop()
    assert read_all(sub)["i"].to_list() == [0, *range(100, 110)]


def test_block_batch_larger_than_capacity_is_admitted_into_an_empty_ring(db):
    src = _source(db, "block")
    sub = db.sink("q").subscribe()
    src.push_arrow(_table(list(range(10))), wait=False)
    assert src.pending == 10
    assert src.try_push((10, "x")) is False  # nothing else until it drains
    db.start()
    src.push((11, "r"))  # waits for the engine
    db.stop()
    assert read_all(sub)["i"].to_list() == [*range(10), 11]


def test_try_push_on_full_block_ring_returns_false_without_blocking(db):
    src = _source(db, "block")
    src.push_batch([(i, "r") for i in range(4)])
    result = []
    t = threading.Thread(target=lambda: result.append(src.try_push((4, "x"))), daemon=True)
    t.start()
    t.join(DEADLINE)
    assert not t.is_alive(), "try_push blocked on a full ring"
    assert result == [False]
    assert src.pending == 4


def test_drop_oldest_drops_older_queued_arrow_batches(db):
    src = _source(db, "drop_oldest", size=8)
    sub = db.sink("q").subscribe()
    for k in range(3):
        src.push_arrow(pa.table({"i": list(range(4 * k, 4 * k + 4)), "s": [f"b{k}"] * 4}))
    assert _stats(db)["dropped"] == 4
    assert src.pending == 8
    db.stop()
    got = read_all(sub)
    assert got["i"].to_list() == list(range(4, 12))
    assert got["s"].to_list() == ["b1"] * 4 + ["b2"] * 4


def test_drop_oldest_mix_drops_in_push_order_and_counts_every_row(db):
    src = _source(db, "drop_oldest", size=8)
    sub = db.sink("q").subscribe()
    src.push((0, "r"))
    src.push((1, "r"))
    src.push_arrow(_table([100, 101, 102, 103]))  # queued after rows 0 and 1
    src.push((2, "r"))
    src.push((3, "r"))
    assert src.pending == 8 and _stats(db)["dropped"] == 0
    src.push((4, "r"))  # drops row 0: older than the batch
    src.push((5, "r"))  # drops row 1
    assert _stats(db)["dropped"] == 2 and src.pending == 8
    src.push((6, "r"))  # the batch is now the oldest: it goes whole
    assert _stats(db)["dropped"] == 6 and src.pending == 5
    src.push_arrow(_table([200, 201, 202, 203, 204]))  # drops rows 2 and 3
    assert _stats(db)["dropped"] == 8 and src.pending == 8
    src.push_arrow(_table([300, 301]))  # drops rows 4 and 5
    assert _stats(db)["dropped"] == 10 and src.pending == 8
    src.push_arrow(_table([400]))  # drops row 6, then ...
    src.push((7, "r"))  # ... the batch of 200s is the oldest
    assert _stats(db)["dropped"] == 16 and src.pending == 4
    db.stop()
    got = read_all(sub)["i"].to_list()
    assert got == [300, 301, 400, 7]
    stats = _stats(db)
    assert stats["pushed"] == len(got) + stats["dropped"]  # no row lost uncounted


def test_drop_oldest_batch_larger_than_ring_is_admitted_alone(db):
    src = _source(db, "drop_oldest", size=8)
    sub = db.sink("q").subscribe()
    src.push_arrow(pa.table({"i": [0, 1, 2], "s": ["a"] * 3}))
    src.push_arrow(pa.table({"i": list(range(10, 30)), "s": ["big"] * 20}))
    assert _stats(db)["dropped"] == 3
    db.stop()
    assert read_all(sub)["i"].to_list() == list(range(10, 30))


def _cpu_ticks(native_id: int) -> int:
    with open(f"/proc/self/task/{native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)


GIL_CHILD = """
import threading, laminar_polars as lp
db = lp.open()
db.execute("CREATE SOURCE q (i BIGINT) WITH (buffer_size = 4, wait_strategy = '%s')")
src = db.source("q")
src.push_batch([(i,) for i in range(4)])
producer = threading.Thread(target=src.push, args=((9,),), daemon=True)
producer.start()
producer.join(0.5)
# Only reached if the blocked producer let this thread have the GIL.
print("main thread ran; producer blocked:", producer.is_alive(), flush=True)
"""


@pytest.mark.parametrize("wait", ["spin", "spin_yield", "park"])
def test_a_blocked_producer_lets_other_threads_run(wait):
    """A producer waiting for room releases the GIL. Run in a child process:
    were the GIL held, the child would hang, and the timeout fails the test
    (in this process the test itself could only hang)."""
    done = subprocess.run([sys.executable, "-c", GIL_CHILD % wait], capture_output=True,
                          text=True, timeout=DEADLINE * 2)
    assert "main thread ran; producer blocked: True" in done.stdout, done.stdout + done.stderr


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_park_uses_no_cpu(db):
    src = _source(db, "block", wait="park")
    sub = db.sink("q").subscribe()
    producer = _blocked_producer(src, 0, 6)
    assert producer.is_alive() and len(producer.done) == 4
    before = _cpu_ticks(producer.native_id)
    time.sleep(0.5)
    used = _cpu_ticks(producer.native_id) - before
    assert producer.is_alive() and len(producer.done) == 4
    assert used <= 10, f"a parked producer used {used} clock ticks in 0.5 s"
    db.start()
    producer.join(DEADLINE)
    assert not producer.is_alive() and producer.error is None
    db.stop()
    assert read_all(sub)["i"].to_list() == list(range(6))


@pytest.mark.parametrize("wait", ["spin", "spin_yield(3)"])
def test_spinning_producer_is_released_when_space_appears(db, wait):
    src = _source(db, "block", wait=wait)
    sub = db.sink("q").subscribe()
    producer = _blocked_producer(src, 0, 40)
    db.start()
    producer.join(DEADLINE)
    assert not producer.is_alive() and producer.error is None
    db.stop()
    assert read_all(sub)["i"].to_list() == list(range(40))


@pytest.mark.parametrize("wait", ["spin", "spin_yield", "park"])
def test_stop_while_blocked_raises_closed_in_the_producer(db, wait):
    src = _source(db, "block", wait=wait)
    sub = db.sink("q").subscribe()
    src.push_arrow(_table([100, 101]))
    producer = _blocked_producer(src, 0, 10)
    arrow = ArrowPusher(src, _table([200]))  # waits too: the room is shared
    arrow.start()
    arrow.join(0.1)
    assert arrow.is_alive() and src.pending == src.capacity
    db.stop()
    producer.join(DEADLINE)
    arrow.join(DEADLINE)
    assert not producer.is_alive() and not arrow.is_alive()
    assert isinstance(producer.error, lp.Closed)
    assert isinstance(arrow.error, lp.Closed)
    got = read_all(sub)
    assert got["i"].to_list() == [100, 101, 0, 1]


@pytest.mark.parametrize("feed", ["push", "push_arrow"])
def test_engine_failure_wakes_a_blocked_producer_and_stop_reports_it(db, feed):
    """A view that fails at run time stops the engine; a producer waiting for room
    must get Closed (nothing will drain the ring again), not wait forever."""
    db.execute("CREATE SOURCE q (i BIGINT NOT NULL, s VARCHAR) WITH (buffer_size = 4, "
               "backpressure = 'block')")
    db.execute("CREATE MATERIALIZED VIEW bad AS SELECT CAST(s AS INT) AS x, count(*) AS n "
               "FROM q GROUP BY CAST(s AS INT)")
    src = db.source("q")
    db.start()
    error: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(10_000):
                if feed == "push":
                    src.push((i, "not a number"))
                else:
                    src.push_arrow(pa.table({"i": [i], "s": ["not a number"]}))
        except BaseException as exc:
            error.append(exc)

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    producer.join(DEADLINE)
    assert not producer.is_alive(), "the producer is still blocked after the engine failed"
    assert error and isinstance(error[0], lp.Closed)
    with pytest.raises(lp.LaminarError, match="the engine failed"):
        db.stop()
