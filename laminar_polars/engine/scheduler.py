"""The scheduler: one thread that drains every source ring in micro-batches.

There is no tick. The thread takes whatever each ring holds the moment it
looks, turns it into one Polars frame per source (zero-copy for fixed-width
columns), and hands the frame with the source's watermark to each consumer of
that source. When nothing is pending it waits on the database's doorbell,
which producers ring only while the scheduler is parked.

A consumer is anything with ``on_batch(frame, watermark)`` and ``on_end()``;
a sink reading a source directly is the simplest one.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Protocol

import polars as pl

from laminar_polars import _native
from laminar_polars.config import WaitStrategy
from laminar_polars.errors import ConfigError
from laminar_polars.io.arrow import frame_of

__all__ = ["Consumer", "Scheduler", "frame_of"]

# Upper bound on rows taken from one ring per micro-batch, so one busy source
# cannot starve the others or build one giant frame.
MAX_BATCH_ROWS = 1 << 20


class Consumer(Protocol):
    def on_batch(self, frame: pl.DataFrame, watermark: int) -> None: ...

    def on_end(self) -> None: ...


class _Route:
    __slots__ = ("consumers", "name", "ring", "schema", "watermark")

    def __init__(self, name: str, ring: _native.Ring, schema: pl.Schema) -> None:
        self.name = name
        self.ring = ring
        self.schema = schema
        self.consumers: list[Consumer] = []
        self.watermark = _native.NO_WATERMARK


class Scheduler:
    """Drains source rings into consumers on a background thread."""

    def __init__(self, doorbell: _native.Doorbell, on_error: Callable[[BaseException], None],
                 *, cpu: int | None = None):
        self.doorbell = doorbell
        self.on_error = on_error
        self.cpu = cpu  # Config.core_affinity: the CPU the thread pins itself to
        self.pinned = threading.Event()
        self.pin_error: OSError | None = None
        self.routes: dict[str, _Route] = {}
        self.wait = WaitStrategy.spin_yield(100)
        self.lock = threading.RLock()  # guards routes against DDL while running
        self.thread: threading.Thread | None = None
        self.running = False
        self.failed = False
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
        if self.thread is not None:
            return
        self.running = True
        self.pinned.clear()
        self.thread = threading.Thread(target=self._run, name="laminar-scheduler", daemon=True)
        self.thread.start()
        self._await_pin()

    def stop(self) -> None:
        """Drain everything pushed so far, stop the thread, end every consumer."""
        self.running = False
        self.doorbell.ring()
        if self.thread is not None:
            self.thread.join()
            self.thread = None
        while not self.failed and self.drain_once():
            pass  # a failed engine is not run again: its error is already reported
        with self.lock:
            for route in self.routes.values():
                for consumer in list(route.consumers):
                    consumer.on_end()

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
        if self.pin_error is not None:
            assert self.thread is not None
            self.thread.join()
            self.thread = None
            raise ConfigError(f"core_affinity: cannot pin the engine thread to CPU {self.cpu}: "
                              f"{self.pin_error}")

    def _run(self) -> None:
        self._pin()
        try:
            while self.running:
                seen = self.doorbell.rung
                if self.drain_once():
                    continue
                with self.lock:
                    rings = [r.ring for r in self.routes.values()]
                self.doorbell.wait(rings, seen, 0.5, self.wait.kind, self.wait.spins)
        except BaseException as exc:  # surfaced to the user by the database
            self.running = False
            self.failed = True
            self.on_error(exc)

    def drain_once(self) -> bool:
        """Take one micro-batch from every ring; True if anything moved."""
        moved = False
        with self.lock:
            routes = list(self.routes.values())
        for route in routes:
            watermark, segments = route.ring.take(MAX_BATCH_ROWS)
            if not segments and watermark == route.watermark:
                continue
            moved = True
            route.watermark = watermark
            frame = (
                frame_of(segments, route.schema) if segments
                else pl.DataFrame(schema=route.schema)
            )
            for consumer in list(route.consumers):
                consumer.on_batch(frame, watermark)
            self.batches += 1
        return moved
