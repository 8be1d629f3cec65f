"""`Sink` and `Subscription`: how results leave the engine (docs/operations.md, "Reading").

The engine thread calls :meth:`Sink.emit` with each result micro-batch; the
sink appends a reference to the (immutable) frame to every live
subscription's queue and wakes its reader. Each subscription is a queue read
at its own pace, so a slow reader never costs another one rows and never
blocks the engine. A queue holds at most ``max_lag_rows`` unread rows: past
that its oldest frames are dropped for it alone, and its next read raises
`Lagged` saying how many rows it missed.

A sink ends when the database stops (subscriptions drain, then raise
`Closed`) or when the engine fails (they drain, then raise `EngineError`).
Blocking reads wait in short slices, so Ctrl-C (``KeyboardInterrupt``)
interrupts them even though Polars installs its own SIGINT handler.

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

import asyncio
import collections
import itertools
import math
import operator
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
import pyarrow as pa

from laminar_polars import _html
from laminar_polars.catalog import type_text
from laminar_polars.errors import (
    Closed,
    ConfigError,
    EngineError,
    Lagged,
    LaminarError,
    Timeout,
    describe_failure,
)

__all__ = ["Sink", "Subscription"]

DEFAULT_MAX_LAG_ROWS = 1_000_000

# Longest a blocking read sleeps before looking for signals: with Polars
# imported, an untimed wait is not woken by Ctrl-C (see FIELD-NOTES.md).
WAIT_SLICE = 0.1


class _Queue:
    """One subscription's state, owned by the sink (the user holds a `Subscription`)."""

    __slots__ = ("cond", "delivered", "dropped_rows", "ended", "frames", "id", "max_lag_rows",
                 "missed", "rows", "unsubscribed", "wakers")

    def __init__(self, id: int, lock: threading.RLock, max_lag_rows: int) -> None:
        self.id = id
        # One condition per subscription on the sink's lock: emit wakes only
        # the reader it gave data to, and a blocked recv sleeps without CPU.
        self.cond = threading.Condition(lock)
        self.frames: collections.deque[pl.DataFrame] = collections.deque()
        self.rows = 0  # rows queued, not yet delivered
        self.delivered = 0
        self.max_lag_rows = max_lag_rows
        self.dropped_rows = 0  # dropped for lagging, in all
        self.missed = 0  # dropped since the last read: the next read raises Lagged
        self.unsubscribed = False  # never receives again
        self.ended = False  # ... because the sink ended (not closed by its reader)
        self.wakers: list[Callable[[], None]] = []  # `async for` readers waiting

    def wake(self) -> None:
        """Wake blocked readers, threads and coroutines (caller holds the lock)."""
        self.cond.notify_all()
        for waker in self.wakers:
            waker()

    def shed(self) -> None:
        """Drop whole frames, oldest first, until at most ``max_lag_rows``
        rows are held; the newest frame is always kept, even when it alone is
        larger (the reader then gets the latest rows, never nothing)."""
        while self.rows > self.max_lag_rows and len(self.frames) > 1:
            rows = self.frames.popleft().height
            self.rows -= rows
            self.missed += rows
            self.dropped_rows += rows


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
    A sink closed with an ``error`` (the engine failed) ends its
    subscriptions with `EngineError` instead of `Closed`.

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
            schema = pl.Schema({**schema, "op": pl.String()})
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
        self._error: BaseException | None = None  # the engine failure that ended it
        self._close_reason: str | None = None

    def __repr__(self) -> str:
        return f"Sink({self.name!r}, kind={self.kind!r}, closed={self._closed})"

    def _repr_html_(self) -> str:
        """The notebook view: columns, kind, and each subscription's lag.

        >>> sink = Sink("out", pl.Schema({"v": pl.Int64}))
        >>> "v BIGINT" in sink._repr_html_()
        True
        """
        columns = ", ".join(f"{name} {type_text(dtype)}" for name, dtype in self.schema.items())
        state = "closed" if self._closed else self.kind
        rows = [[q["id"], q["lag_rows"], q["rows_delivered"], q["dropped_rows"]]
                for q in self.metrics()]
        table = _html.table(["subscription", "lag rows", "delivered", "dropped rows"], rows)
        return _html.block(f"sink {self.name}", [f"<div>{_html.escape(columns)}</div>", table],
                           state)

    @property
    def closed(self) -> bool:
        """Whether the stream has ended."""
        return self._closed

    @property
    def kind(self) -> str:
        """``'spsc'`` with at most one live subscription, else ``'broadcast'``."""
        return "broadcast" if len(self._queues) > 1 else "spsc"

    def subscribe(self, max_lag_rows: int = DEFAULT_MAX_LAG_ROWS) -> Subscription:
        """A new subscription that sees every frame emitted from now on.

        Parameters
        ----------
        max_lag_rows
            How many unread rows the subscription may hold. Past that, its
            oldest frames are dropped (for it alone: other subscriptions keep
            theirs), counted in ``dropped_rows`` of :meth:`metrics`, and its
            next read raises `Lagged` (``missed`` says how many rows it lost
            since its last read) before going on with the rows it still holds.
            Whole frames are dropped, oldest first; the newest frame is always
            kept, even if it alone holds more rows.

        Raises
        ------
        ConfigError
            If ``max_lag_rows`` is not an integer >= 1.
        Closed
            If the sink is closed.
        EngineError
            If the sink ended because the engine failed.

        Examples
        --------
        >>> sink = Sink("s", pl.Schema({"v": pl.Int64}))
        >>> sub = sink.subscribe(max_lag_rows=2)
        >>> for v in range(4):
        ...     sink.emit(pl.DataFrame({"v": [v]}))
        >>> try:
        ...     sub.poll()
        ... except Lagged as lagged:
        ...     print(lagged.missed)
        2
        >>> sub.poll()["v"].to_list()
        [2, 3]
        """
        max_lag_rows = _max_lag_rows(max_lag_rows)
        with self._lock:
            if self._closed:
                raise self._end_error()
            queue = _Queue(next(self._ids), self._lock, max_lag_rows)
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
                if queue.rows > queue.max_lag_rows:
                    queue.shed()
                queue.cond.notify()
                for waker in queue.wakers:
                    waker()

    def close(self, error: BaseException | None = None, *, reason: str | None = None) -> None:
        """End the stream: subscriptions drain what they hold, then raise `Closed`
        (naming ``reason`` if given), or `EngineError` with ``error`` as its
        cause when the engine failed.

        Idempotent: the first close decides how subscriptions end.
        """
        with self._lock:
            if not self._closed:
                self._closed = True
                self._error = error
                self._close_reason = reason
            for queue in self._queues:
                queue.wake()

    def metrics(self) -> list[dict[str, int]]:
        """Per live subscription: ``id``, ``lag_rows``, ``lag_batches``,
        ``rows_delivered``, and ``dropped_rows`` (dropped for lagging more
        than its ``max_lag_rows``)."""
        with self._lock:
            return [
                {
                    "id": q.id,
                    "lag_rows": q.rows,
                    "lag_batches": len(q.frames),
                    "rows_delivered": q.delivered,
                    "dropped_rows": q.dropped_rows,
                }
                for q in self._queues
            ]

    def reset_after_fork(self, reason: str) -> None:
        """In a child made by ``fork()``: new locks (another thread of the
        parent may have held the old ones at the fork), then close with
        ``reason``; subscriptions drain what they hold, then raise `Closed`."""
        self._lock = threading.RLock()
        for queue in self._queues:
            queue.cond = threading.Condition(self._lock)
            queue.wakers = []  # the parent's event loops do not exist here
        self.close(reason=reason)

    def _end_error(self) -> LaminarError:
        """What a read raises once this closed sink's rows are drained."""
        if self._error is not None:
            error = EngineError(
                f"sink {self.name!r} ended because the engine failed "
                f"({describe_failure(self._error)}); every row it had received was delivered"
            )
            error.__cause__ = self._error
            return error
        reason = f": {self._close_reason}" if self._close_reason else ""
        return Closed(f"sink {self.name!r} is closed{reason}")

    def _unsubscribe(self, queue: _Queue) -> None:
        with self._lock:
            if queue.unsubscribed:
                return
            queue.unsubscribed = True
            queue.frames.clear()  # release the frames now, not when the handle dies
            queue.rows = 0
            queue.missed = 0
            self._queues = tuple(q for q in self._queues if q is not queue)
            queue.wake()  # wake readers blocked in recv: they raise Closed


class Subscription:
    """One reader's view of a `Sink`: every frame emitted after it subscribed.

    Frames queue up until read; :meth:`poll` and :meth:`recv` return everything
    queued so far as one DataFrame. Safe to use from several threads (each
    frame goes to exactly one reader). Iterating (``for``, ``async for``), or
    reading it as an Arrow stream, ends when the sink closes, or raises
    `EngineError` if the engine failed. When the stream has ended and been
    drained the subscription closes itself. A read after the subscription
    lagged more than its ``max_lag_rows`` raises `Lagged` once, then goes on.

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
        return self._queue.unsubscribed

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
        EngineError
            If nothing is queued and the stream ended because the engine failed.
        Lagged
            If rows were dropped for lagging since the last read (once).
        """
        with self._queue.cond:
            frames = self._take()
        return None if frames is None else _concat(frames)

    def recv(self, timeout: float | None = None) -> pl.DataFrame:
        """Everything queued, concatenated, waiting up to ``timeout`` seconds for data.

        The wait wakes on Ctrl-C (``KeyboardInterrupt``).

        Raises
        ------
        Timeout
            If ``timeout`` passed with nothing queued.
        Closed
            If nothing is queued and the stream has ended or this subscription
            was closed.
        EngineError
            If nothing is queued and the stream ended because the engine failed.
        Lagged
            If rows were dropped for lagging since the last read (once).
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

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> pl.DataFrame:
        """The next frames, awaited without blocking the event loop."""
        loop = asyncio.get_running_loop()
        queue = self._queue
        while True:
            ready = loop.create_future()

            def wake(ready: asyncio.Future[None] = ready) -> None:  # any thread
                try:
                    loop.call_soon_threadsafe(_resolve, ready)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

            with queue.cond:
                try:
                    frames = self._take()
                except Closed:
                    raise StopAsyncIteration from None
                if frames is None:
                    queue.wakers.append(wake)
            if frames is not None:
                return _concat(frames)
            try:
                await ready
            finally:
                with queue.cond:
                    if wake in queue.wakers:
                        queue.wakers.remove(wake)

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
        """Block until frames are queued, then pop them all.

        Waits in slices of `WAIT_SLICE`: an untimed wait would not wake on
        Ctrl-C once Polars is imported.
        """
        queue = self._queue
        # An infinite timeout is no timeout (Condition.wait rejects inf).
        deadline = None if timeout is None or timeout == math.inf else time.monotonic() + timeout
        with queue.cond:
            while (frames := self._take()) is None:
                if deadline is None:
                    queue.cond.wait(WAIT_SLICE)
                    continue
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise Timeout(f"no data from sink {self._sink.name!r} within {timeout} s")
                queue.cond.wait(min(remaining, WAIT_SLICE))
        return frames

    def _take(self) -> list[pl.DataFrame] | None:
        """Pop every queued frame (caller holds the lock); at the end of the
        stream raise what ended it, `Closed` or `EngineError`."""
        queue = self._queue
        if queue.missed:
            missed, queue.missed = queue.missed, 0
            raise Lagged(
                f"subscription {queue.id} to sink {self._sink.name!r} fell more than "
                f"{queue.max_lag_rows} rows behind: {missed} rows were dropped for it since "
                f"its last read (it goes on with the rows it still holds)",
                missed,
            )
        if queue.frames:
            frames = list(queue.frames)
            queue.frames.clear()
            queue.delivered += queue.rows
            queue.rows = 0
            return frames
        if queue.unsubscribed:
            if queue.ended:
                raise self._sink._end_error()
            raise Closed(f"subscription to sink {self._sink.name!r} is closed")
        if self._sink._closed:
            queue.ended = True
            self._sink._unsubscribe(queue)  # drained: it can never deliver again
            raise self._sink._end_error()
        return None


def _max_lag_rows(value: Any) -> int:
    if not isinstance(value, bool):
        try:
            value = operator.index(value)
        except TypeError:
            pass
        else:
            if value >= 1:
                return value
    raise ConfigError(
        f"max_lag_rows is how many unread rows a subscription may hold: an integer >= 1, "
        f"got {value!r}"
    )


def _resolve(ready: asyncio.Future[None]) -> None:
    if not ready.done():
        ready.set_result(None)


def _concat(frames: list[pl.DataFrame]) -> pl.DataFrame:
    # Outside the lock: concatenation only links chunks, but is not free.
    return frames[0] if len(frames) == 1 else pl.concat(frames, how="vertical", rechunk=False)
