"""`Sink` and `Subscription`: how results leave the engine (SPEC §6).

The engine thread calls :meth:`Sink.emit` with each result micro-batch; the
sink appends a reference to the (immutable) frame to every live
subscription's queue and wakes its reader. Each subscription is an unbounded
queue read at its own pace, so a slow reader never costs another one rows and
never blocks the engine.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.io.sink import Sink
>>> sink = Sink("out", pl.Schema({"k": pl.String, "v": pl.Int64}))
>>> a, b = sink.subscribe(), sink.subscribe()
>>> sink.kind
'broadcast'
>>> sink.emit(pl.DataFrame({"k": ["x"], "v": [1]}))
>>> sink.emit(pl.DataFrame({"k": ["y"], "v": [2]}))
>>> a.poll()["v"].to_list(), b.recv(timeout=1)["v"].to_list()
([1, 2], [1, 2])
>>> a.poll() is None
True
>>> sink.close()
>>> list(a)
[]
"""

from __future__ import annotations

import collections
import itertools
import math
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

import polars as pl
import pyarrow as pa

from laminar_polars.errors import Closed, Timeout

__all__ = ["Sink", "Subscription"]


class _Queue:
    """One subscription's state, owned by the sink (the user holds a `Subscription`)."""

    __slots__ = ("cond", "delivered", "dropped", "frames", "id", "rows")

    def __init__(self, id: int, lock: threading.RLock) -> None:
        self.id = id
        # One condition per subscription on the sink's lock: emit wakes only
        # the reader it gave data to, and a blocked recv sleeps without CPU.
        self.cond = threading.Condition(lock)
        self.frames: collections.deque[pl.DataFrame] = collections.deque()
        self.rows = 0  # rows queued, not yet delivered
        self.delivered = 0
        self.dropped = False  # unsubscribed: never receives again


class Sink:
    """A named output of the engine that any number of subscribers read.

    Parameters
    ----------
    name
        The sink's name.
    schema
        Schema of the frames the engine emits.
    changelog
        When true the engine's frames carry an ``op`` column (``pl.String``)
        saying what each row does; ``schema`` (and the Arrow schema of
        subscriptions) then ends with ``op`` unless it already has one.

    Notes
    -----
    ``kind`` is derived: ``'spsc'`` with at most one live subscription,
    ``'broadcast'`` with more. Frames emitted after :meth:`close` are
    discarded (a dropped sink may still get a batch the engine had in flight).

    Examples
    --------
    >>> sink = Sink("s", pl.Schema({"v": pl.Int64}), changelog=True)
    >>> list(sink.schema)
    ['v', 'op']
    >>> sink.subscribe().poll() is None
    True
    """

    def __init__(self, name: str, schema: pl.Schema, *, changelog: bool = False) -> None:
        schema = pl.Schema(schema)
        if changelog and "op" not in schema:
            schema = pl.Schema({**schema, "op": pl.String})
        self.name = name
        self.schema = schema
        self.changelog = changelog
        self.arrow_schema: pa.Schema = pl.DataFrame(schema=schema).to_arrow().schema
        # Reentrant: a Subscription's finalizer (which unsubscribes) may run
        # from the garbage collector while this very thread holds the lock.
        self._lock = threading.RLock()
        # Copy-on-write tuple: emit iterates a snapshot that an unsubscribe
        # (possibly from a finalizer mid-emit) cannot mutate under it.
        self._queues: tuple[_Queue, ...] = ()
        self._ids = itertools.count(1)
        self._closed = False

    def __repr__(self) -> str:
        return f"Sink({self.name!r}, kind={self.kind!r}, closed={self._closed})"

    @property
    def closed(self) -> bool:
        """Whether the stream has ended."""
        return self._closed

    @property
    def kind(self) -> str:
        """``'spsc'`` with at most one live subscription, else ``'broadcast'``."""
        return "broadcast" if len(self._queues) > 1 else "spsc"

    def subscribe(self) -> Subscription:
        """A new subscription that sees every frame emitted from now on.

        Raises
        ------
        Closed
            If the sink is closed.
        """
        with self._lock:
            if self._closed:
                raise Closed(f"sink {self.name!r} is closed")
            queue = _Queue(next(self._ids), self._lock)
            self._queues = (*self._queues, queue)
        sub = Subscription(self, queue)
        # A subscription dropped without close() must not queue frames forever.
        weakref.finalize(sub, self._unsubscribe, queue)
        return sub

    def emit(self, frame: pl.DataFrame) -> None:
        """Broadcast ``frame`` to every live subscription (engine thread).

        Appends a reference per subscription and never copies or blocks;
        empty frames are skipped.
        """
        rows = frame.height
        if rows == 0:
            return
        with self._lock:
            if self._closed:
                return
            for queue in self._queues:
                queue.frames.append(frame)
                queue.rows += rows
                queue.cond.notify()

    def close(self) -> None:
        """End the stream: subscriptions drain what they hold, then raise `Closed`.

        Idempotent.
        """
        with self._lock:
            self._closed = True
            for queue in self._queues:
                queue.cond.notify_all()

    def metrics(self) -> list[dict[str, int]]:
        """Per live subscription: ``id``, ``lag_rows``, ``lag_batches``, ``rows_delivered``."""
        with self._lock:
            return [
                {
                    "id": q.id,
                    "lag_rows": q.rows,
                    "lag_batches": len(q.frames),
                    "rows_delivered": q.delivered,
                }
                for q in self._queues
            ]

    def _unsubscribe(self, queue: _Queue) -> None:
        with self._lock:
            if queue.dropped:
                return
            queue.dropped = True
            queue.frames.clear()  # release the frames now, not when the handle dies
            queue.rows = 0
            self._queues = tuple(q for q in self._queues if q is not queue)
            queue.cond.notify_all()  # wake readers blocked in recv: they raise Closed


class Subscription:
    """One reader's view of a `Sink`: every frame emitted after it subscribed.

    Frames queue up until read; :meth:`poll` and :meth:`recv` return everything
    queued so far as one DataFrame. Safe to use from several threads (each
    frame goes to exactly one reader). Iterating, or reading it as an Arrow
    stream, ends when the sink closes. When the stream has ended and been
    drained the subscription closes itself.

    Examples
    --------
    >>> sink = Sink("s", pl.Schema({"v": pl.Int64}))
    >>> sub = sink.subscribe()
    >>> sink.emit(pl.DataFrame({"v": [1, 2]})); sink.close()
    >>> [df.height for df in sub]
    [2]
    >>> sub.closed
    True
    """

    def __init__(self, sink: Sink, queue: _Queue) -> None:
        self._sink = sink
        self._queue = queue

    def __repr__(self) -> str:
        return f"Subscription(sink={self._sink.name!r}, id={self._queue.id}, closed={self.closed})"

    @property
    def closed(self) -> bool:
        """Whether this subscription will never deliver again."""
        return self._queue.dropped

    @property
    def schema(self) -> pl.Schema:
        """Schema of the frames delivered."""
        return self._sink.schema

    def poll(self) -> pl.DataFrame | None:
        """Everything queued, concatenated; ``None`` if nothing is. Never blocks.

        Raises
        ------
        Closed
            If nothing is queued and the stream has ended or this subscription
            was closed.
        """
        with self._queue.cond:
            frames = self._take()
        return None if frames is None else _concat(frames)

    def recv(self, timeout: float | None = None) -> pl.DataFrame:
        """Everything queued, concatenated, waiting up to ``timeout`` seconds for data.

        Raises
        ------
        Timeout
            If ``timeout`` passed with nothing queued.
        Closed
            If nothing is queued and the stream has ended or this subscription
            was closed.
        """
        return _concat(self._wait(timeout))

    def recv_timeout(self, seconds: float) -> pl.DataFrame:
        """``recv(timeout=seconds)``."""
        return self.recv(timeout=seconds)

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self

    def __next__(self) -> pl.DataFrame:
        try:
            return self.recv()
        except Closed:
            raise StopIteration from None

    def close(self) -> None:
        """Unsubscribe: stop receiving and release queued frames. Idempotent."""
        self._sink._unsubscribe(self._queue)

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """An Arrow C stream (PyCapsule) of this subscription's batches.

        Reading it blocks for more data and ends when the subscription ends,
        consuming what it reads. String columns are ``large_string`` (Polars'
        Arrow layout); pyarrow (``pa.table(sub)``), Polars (``pl.DataFrame(sub)``)
        and DuckDB (``duckdb.from_arrow(sub)``) read it.

        Examples
        --------
        >>> sink = Sink("s", pl.Schema({"v": pl.Int64}))
        >>> sub = sink.subscribe()
        >>> sink.emit(pl.DataFrame({"v": [1, 2]})); sink.close()
        >>> pa.table(sub)["v"].to_pylist()
        [1, 2]
        """
        schema = self._sink.arrow_schema
        reader = pa.RecordBatchReader.from_batches(schema, self._batches(schema))
        return reader.__arrow_c_stream__(requested_schema)

    def _batches(self, schema: pa.Schema) -> Iterator[pa.RecordBatch]:
        names = schema.names
        while True:
            try:
                frames = self._wait(None)
            except Closed:
                return
            # Frame by frame, not concatenated: no copy, and each frame is
            # conformed on its own (e.g. the engine put op first, or a column
            # is Null-typed because it came from an all-null literal).
            for frame in frames:
                if frame.columns != names:
                    frame = frame.select(names)
                table = frame.to_arrow()
                if table.schema != schema:
                    table = table.cast(schema)
                yield from table.to_batches()

    def _wait(self, timeout: float | None) -> list[pl.DataFrame]:
        """Block until frames are queued, then pop them all."""
        queue = self._queue
        # An infinite timeout is no timeout (Condition.wait rejects inf).
        deadline = None if timeout is None or timeout == math.inf else time.monotonic() + timeout
        with queue.cond:
            while (frames := self._take()) is None:
                if deadline is None:
                    queue.cond.wait()
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"no data from sink {self._sink.name!r} within {timeout} s")
                queue.cond.wait(remaining)
        return frames

    def _take(self) -> list[pl.DataFrame] | None:
        """Pop every queued frame (caller holds the lock); raise Closed at the end."""
        queue = self._queue
        if queue.frames:
            frames = list(queue.frames)
            queue.frames.clear()
            queue.delivered += queue.rows
            queue.rows = 0
            return frames
        if queue.dropped:
            raise Closed(f"subscription to sink {self._sink.name!r} is closed")
        if self._sink._closed:
            self._sink._unsubscribe(queue)  # drained: it can never deliver again
            raise Closed(f"sink {self._sink.name!r} is closed")
        return None


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    # Outside the lock: concatenation only links chunks, but is not free.
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=False)
