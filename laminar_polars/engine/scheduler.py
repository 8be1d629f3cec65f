"""The scheduler: one thread that drains every source ring in micro-batches.

There is no tick. The thread takes whatever each ring holds the moment it
looks, turns it into one Polars frame per source (zero-copy for fixed-width
columns), and hands the frame with the source's watermark to each consumer of
that source. When nothing is pending it waits on the database's doorbell,
which producers ring only while the scheduler is parked.

A consumer is a `Reader` (``on_batch(delta, watermark)``, ``on_end(error)``):
the first node of a view reading the source, or a sink's feed.

Between two micro-batches the engine thread is at a *barrier*: every view's
state is whole (no batch half through it). `at_barrier` runs a function
there (`db.query` takes its snapshot of the views so, a checkpoint will too):
on the engine thread while it runs, else on the caller's, under the lock.

Stopping and failing end the same way: the sources are closed first (their
watermark goes to +inf, so open windows close), then the engine drains
whatever the rings still hold into every consumer, then ends every consumer.
A consumer whose ``on_batch`` raises, or a reader of a view downstream, is cut
off at its edge (see `readers`) and the engine *fails* (`fail`): every ring is
closed, saying why, so pushes raise `Closed` with the failure as their cause;
the healthy consumers still receive every row already accepted, and are then
ended with the failure (their subscriptions end with `EngineError`). A
failure outside any consumer (taking from a ring, building a frame) stops the
engine without that last drain.

The thread holds the scheduler and what it drives, never the database, so a
database nobody references can be collected and its finalizer stop the thread
(`shutdown`).
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import polars as pl

from laminar_polars import _native
from laminar_polars.config import WaitStrategy
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.readers import Reader, deliver
from laminar_polars.errors import ConfigError, describe_failure
from laminar_polars.io.arrow import frame_of

__all__ = ["Consumer", "Scheduler"]

Consumer = Reader  # what the scheduler feeds from a source

# Upper bound on rows taken from one ring per micro-batch, so one busy source
# cannot starve the others or build one giant frame.
MAX_BATCH_ROWS = 1 << 20

# Longest a join of the engine thread sleeps before looking for signals: Polars'
# SIGINT handler keeps an untimed wait from waking on Ctrl-C (FIELD-NOTES).
JOIN_SLICE = 0.1

T = TypeVar("T")


class _Request:
    """A function to run at a barrier, and its outcome."""

    __slots__ = ("done", "error", "fn", "result")

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            self.done.set()


# The write-ahead log's hook: (source, first, end, rows, watermark) of every
# micro-batch taken, before the graph sees it (positions are this run's).
Journal = Callable[[str, int, int, "pl.DataFrame | None", int], None]


class _Route:
    __slots__ = ("consumed", "consumers", "name", "ring", "schema", "watermark")

    def __init__(self, name: str, ring: _native.Ring, schema: pl.Schema) -> None:
        self.name = name
        self.ring = ring
        self.schema = schema
        self.consumers: list[Consumer] = []
        self.watermark = _native.NO_WATERMARK
        self.consumed = 0  # the ring's rows taken or dropped, as of the last take


class Scheduler:
    """Drains source rings into consumers on a background thread."""

    def __init__(self, doorbell: _native.Doorbell, *, cpu: int | None = None) -> None:
        self.doorbell = doorbell
        self.cpu = cpu  # Config.core_affinity: the CPU the thread pins itself to
        self.pinned = threading.Event()
        self.pin_error: OSError | None = None
        self.routes: dict[str, _Route] = {}
        self.wait = WaitStrategy.spin_yield(100)
        self.lock = threading.RLock()  # guards routes against DDL while running
        self.thread: threading.Thread | None = None
        self.running = False
        self.error: BaseException | None = None  # the first failure, once failed
        self.broken = False  # failed outside any consumer: nothing is drained any more
        self.ended = False  # every consumer has been ended
        self.forked = False  # this is a copy in a forked child: it never runs
        self.requests: collections.deque[_Request] = collections.deque()  # for the barrier
        self.journal: Journal | None = None  # the write-ahead log's, with durability
        self.batches = 0

    # -- topology -------------------------------------------------------------
    def add_source(self, name: str, ring: _native.Ring, schema: pl.Schema) -> None:
        with self.lock:
            self.routes[name] = _Route(name, ring, schema)

    def remove_source(self, name: str) -> None:
        with self.lock:
            self.routes.pop(name, None)

    def subscribe(self, source: str, consumer: Consumer) -> None:
        with self.lock:
            self.routes[source].consumers.append(consumer)
            if self.ended:  # attached while the engine was ending: it ends too
                consumer.on_end(self.error)

    def unsubscribe(self, source: str, consumer: Consumer) -> None:
        with self.lock:
            route = self.routes.get(source)
            if route is not None and consumer in route.consumers:
                route.consumers.remove(consumer)

    def use_wait_strategy(self, strategies: list[WaitStrategy]) -> None:
        """The engine waits as eagerly as its most eager source asks."""
        order = {"spin": 0, "spin_yield": 1, "park": 2}
        if strategies:
            self.wait = min(strategies, key=lambda w: (order[w.kind], -w.spins))

    # -- running --------------------------------------------------------------
    def start(self) -> None:
        if self.thread is not None or self.ended or self.forked:
            return
        self.running = True
        self.pinned.clear()
        self.thread = threading.Thread(target=self._run, name="laminar-scheduler", daemon=True)
        self.thread.start()
        self._await_pin()

    def stop(self) -> None:
        """Drain everything pushed so far, end every consumer, and wait for it.

        The caller closes the rings first, so the drain ends. Without a thread
        (never started) the drain runs here. The wait is a join in slices, so
        Ctrl-C interrupts it (the engine then finishes on its own).
        """
        if self.forked:
            return  # the rows belong to the parent's engine: never drain them here
        self.shutdown()
        thread = self.thread
        if thread is None:
            self._finish()
        elif thread is not threading.current_thread():
            while thread.is_alive():
                thread.join(JOIN_SLICE)

    def shutdown(self) -> None:
        """Ask the thread to finish (drain, end every consumer, exit) without
        waiting for it: safe from a finalizer, on any thread."""
        self.running = False
        if not self.forked:
            self.doorbell.ring()

    def fail(self, error: BaseException) -> None:
        """Record the engine's first failure and close every source with it."""
        with self.lock:
            if self.error is not None:
                return
            self.error = error
            rings = [route.ring for route in self.routes.values()]
        reason = f"the engine failed ({describe_failure(error)})"
        for ring in rings:
            ring.close(reason=reason, cause=error)
        self.doorbell.ring()

    def after_fork_in_child(self, reason: str) -> None:
        """Make this copy, in a child made by ``fork()``, inert: the engine
        thread does not exist here and the rows belong to the parent's
        engine, so it never runs or drains; every ring is closed with
        ``reason`` so a push raises `Closed` instead of waiting for room."""
        self.forked = True
        self.running = False
        self.thread = None
        self.lock = threading.RLock()  # the parent's engine thread may have held it
        for route in self.routes.values():
            route.ring.close_in_forked_child(reason)

    def _pin(self) -> None:
        """On the scheduler thread: pin it to ``self.cpu`` (if set), then let
        `start` return. A CPU that went away since `open()` checked it stops
        the thread before it drains anything."""
        try:
            if self.cpu is not None:
                os.sched_setaffinity(0, {self.cpu})  # 0: the calling thread
        except OSError as error:
            self.pin_error = error
            self.running = False
        finally:
            self.pinned.set()

    def _await_pin(self) -> None:
        self.pinned.wait()
        error = self.pin_error
        if error is not None:
            assert self.thread is not None
            self.thread.join()
            self.thread, self.pin_error = None, None
            raise ConfigError(f"core_affinity: cannot pin the engine thread to CPU {self.cpu}: "
                              f"{error}")

    def _run(self) -> None:
        self._pin()
        if self.pin_error is not None:
            return  # start() raises; the engine did not run and nothing ended
        try:
            while self.running and self.error is None:
                seen = self.doorbell.rung
                moved = self.drain_once()
                self._serve_requests()  # between micro-batches: the barrier
                if moved:
                    continue
                with self.lock:
                    rings = [r.ring for r in self.routes.values()]
                self.doorbell.wait(rings, seen, 0.5, self.wait.kind, self.wait.spins)
        except BaseException as exc:  # a failure outside any consumer
            self.broken = True
            self.fail(exc)
        self._finish()

    def _finish(self) -> None:
        """Drain until nothing moves (the rings are closed by now), then end
        every consumer, with the failure if the engine failed."""
        try:
            while not self.broken and self.drain_once():
                pass
        except Exception as exc:
            self.broken = True
            self.fail(exc)
        self._serve_requests()
        with self.lock:
            if self.ended:
                return
            self.ended = True
            consumers = [c for route in self.routes.values() for c in route.consumers]
        for consumer in consumers:
            consumer.on_end(self.error)

    # -- the barrier -------------------------------------------------------------
    def at_barrier(self, fn: Callable[[], T]) -> T:
        """``fn()`` run between two micro-batches, and its result.

        While the engine thread runs, it runs ``fn`` after its current
        micro-batch and the caller waits (in slices: Ctrl-C interrupts the
        wait); otherwise nothing else runs the graph, and ``fn`` runs here.
        """
        thread = self.thread
        if thread is None or thread is threading.current_thread() or not thread.is_alive():
            with self.lock:
                return fn()
        request = _Request(fn)
        with self.lock:
            self.requests.append(request)
        self.doorbell.ring()
        while not request.done.wait(JOIN_SLICE):
            if not thread.is_alive():  # it ended first: nothing runs the graph any more
                with self.lock:
                    if request in self.requests:
                        self.requests.remove(request)
                        request.run()
        if request.error is not None:
            raise request.error
        result: T = request.result
        return result

    def _serve_requests(self) -> None:
        while True:
            with self.lock:
                if not self.requests:
                    return
                request = self.requests.popleft()
            request.run()

    def drain_once(self) -> bool:
        """Take one micro-batch from every ring; True if anything moved.

        A consumer that raises is cut off and fails the engine; the other
        consumers of the batch still get it.
        """
        moved = False
        with self.lock:
            routes = list(self.routes.values())
        for route in routes:
            watermark, segments, consumed = route.ring.take(MAX_BATCH_ROWS)
            if not segments and watermark == route.watermark:
                continue
            moved = True
            frame = (
                frame_of(segments, route.schema) if segments
                else pl.DataFrame(schema=route.schema)
            )
            if self.journal is not None:  # logged before anything reads the rows
                self.journal(route.name, route.consumed, consumed,
                             frame if frame.height else None, watermark)
            route.consumed, route.watermark = consumed, watermark
            deliver(route.consumers, Delta(frame), watermark, self.fail)
            self.batches += 1
        return moved

    # -- durability ------------------------------------------------------------------
    def feed(self, source: str, rows: pl.DataFrame | None, watermark: int) -> None:
        """Hand ``rows`` with ``watermark`` to ``source``'s consumers as a
        micro-batch would be (replaying the log, before the engine starts)."""
        route = self.routes[source]
        frame = pl.DataFrame(schema=route.schema) if rows is None else rows
        if frame.schema != route.schema:
            frame = frame.cast(route.schema)
        route.watermark = watermark
        deliver(route.consumers, Delta(frame), watermark, self.fail)

    def positions(self) -> dict[str, tuple[int, int]]:
        """Per source, the ring's rows taken or dropped as of the last take
        and the watermark it went through the graph with (at a barrier)."""
        with self.lock:
            return {name: (r.consumed, r.watermark) for name, r in self.routes.items()}
