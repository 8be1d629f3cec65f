"""`Source`: the handle users push rows and Arrow batches into (docs/operations.md, "Pushing").

``push``, ``try_push`` and ``push_batch`` run entirely in the native producer it
subclasses (no Python frame on the hot path); this module adds what is not hot:
Arrow batches, watermarks, closing and cloning.

Examples
--------
>>> import datetime as dt
>>> import laminar_polars as lp
>>> db = lp.open()
>>> db.execute("CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, ts TIMESTAMP)")
>>> src = db.source("trades")
>>> src.push(("AAPL", 150.0, dt.datetime(2024, 1, 1, 9, 30)))
>>> src.push({"symbol": "MSFT", "price": None, "ts": 1_704_101_400_000_000})
>>> src.pending, src.channel
(2, 'spsc')
>>> src.push(("AAPL", "cheap", 0))
Traceback (most recent call last):
...
laminar_polars.errors.SchemaError: column 'price': expected DOUBLE, got 'cheap' (str)
>>> db.stop()
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laminar_polars import _native
from laminar_polars.catalog import ColumnDef, ColumnType, SourceDef
from laminar_polars.errors import Closed, Full, SchemaError

__all__ = ["Source", "SyncSource"]

_ARROW_TYPE = {
    ColumnType.STRING: pa.string(),
    ColumnType.FLOAT64: pa.float64(),
    ColumnType.FLOAT32: pa.float32(),
    ColumnType.INT64: pa.int64(),
    ColumnType.INT32: pa.int32(),
    ColumnType.INT16: pa.int16(),
    ColumnType.BOOLEAN: pa.bool_(),
    ColumnType.TIMESTAMP: pa.timestamp("us"),
    ColumnType.DATE: pa.date32(),
}
# What a record type's field may be annotated with, per column type: the
# Python types a push takes, and the numpy scalars standing for them.
_PYTHON_TYPE: dict[ColumnType, tuple[type, ...]] = {
    ColumnType.STRING: (str,),
    ColumnType.FLOAT64: (float, int, np.floating, np.integer),
    ColumnType.FLOAT32: (float, int, np.floating, np.integer),
    ColumnType.INT64: (int, np.integer),
    ColumnType.INT32: (int, np.integer),
    ColumnType.INT16: (int, np.integer),
    ColumnType.BOOLEAN: (bool, np.bool_),
    ColumnType.TIMESTAMP: (dt.datetime, int, np.datetime64, np.integer),
    ColumnType.DATE: (dt.date, int, np.datetime64, np.integer),
}

# What Python's datetime and date hold (years 1 to 9999), as int64 microseconds
# and int32 days: every value a source accepts reads back.
_TIME_RANGE = {
    ColumnType.TIMESTAMP: (_native.MIN_TIMESTAMP_US, _native.MAX_TIMESTAMP_US),
    ColumnType.DATE: (_native.MIN_DATE_DAYS, _native.MAX_DATE_DAYS),
}
_RANGE_TEXT = {
    ColumnType.TIMESTAMP: _native.TIMESTAMP_RANGE,
    ColumnType.DATE: "0001-01-01 to 9999-12-31",
}

_native.set_errors(SchemaError, Full, Closed)


def _is_string(t: pa.DataType) -> bool:
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t)


def _castable(source: pa.DataType, target: ColumnType) -> bool:
    """Casts we accept: within a type family, widening or exact; no parsing."""
    if target is ColumnType.STRING:
        return _is_string(source)
    if target in (ColumnType.FLOAT64, ColumnType.FLOAT32):
        return pa.types.is_floating(source) or pa.types.is_integer(source)
    if target in (ColumnType.INT64, ColumnType.INT32, ColumnType.INT16):
        return pa.types.is_integer(source)
    if target is ColumnType.BOOLEAN:
        return pa.types.is_boolean(source)
    if target is ColumnType.TIMESTAMP:
        return pa.types.is_timestamp(source)
    return pa.types.is_date(source)


def _to_micros(value: dt.datetime | int | np.datetime64) -> int:
    """A watermark as int microseconds: a datetime (aware ones in UTC), a numpy
    datetime64 or int microseconds, within the TIMESTAMP range."""
    if isinstance(value, np.datetime64) and not np.isnat(value):
        micros = _native.datetime64_micros(value)
    elif isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        micros = int(value)
    elif isinstance(value, dt.datetime) and value == value:  # NaT is no time
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        micros = (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)
    else:
        raise SchemaError(f"a watermark is a datetime or int microseconds, got {value!r}")
    if not _native.MIN_TIMESTAMP_US <= micros <= _native.MAX_TIMESTAMP_US:
        raise SchemaError(
            f"a watermark of {value!r} is out of the TIMESTAMP range ({_native.TIMESTAMP_RANGE})"
        )
    return micros


class Source(_native.Producer):
    """A producer handle of one source; get one with ``db.source(name)``.

    Every handle pushes into the same ring. The ring is single-producer until
    a second handle exists (``clone()``), then claims slots with a CAS.
    """

    def __init__(self, ring: _native.Ring, definition: SourceDef, record_type: type | None = None):
        self.definition = definition
        self.name = definition.name
        self.record_type = record_type
        if record_type is not None:
            _check_record_type(definition, record_type)

    # -- rows (push / try_push are inherited from the native producer) --------
    def push_batch(self, rows: Sequence[Any]) -> None:
        """Push a list of rows, all or nothing.

        Every row is checked before any is enqueued, and the rows are then
        admitted together, like one Arrow batch (see `push_arrow`, whose
        backpressure rules apply): a bad row, `Full`, `Closed` or Ctrl-C
        while waiting for room enqueues none of them.
        """
        staged = self.stage_rows(rows)
        if staged is not None:
            chunk, event_times = staged
            self._enqueue(chunk, len(chunk), event_times, wait=True)

    # -- Arrow ----------------------------------------------------------------
    def push_arrow(self, data: Any, *, wait: bool = True) -> None:
        """Push an Arrow batch: any object with ``__arrow_c_array__`` or
        ``__arrow_c_stream__`` (pyarrow, Polars, pandas, DuckDB, nanoarrow).

        Columns are matched by name; compatible types are cast (an int column
        into DOUBLE, ``timestamp[ns]`` into TIMESTAMP floored to microseconds,
        ...), anything else raises `SchemaError` and enqueues nothing.
        Fixed-width columns are not copied. Rows older than the watermark
        when the batch is admitted are dropped and counted as late.

        The batch's rows take room in the source's buffer exactly like pushed
        rows do (one capacity for both). When they do not fit, backpressure
        decides: ``'block'`` waits, with the GIL released, until the engine has
        drained enough (``wait=False`` raises `Full` instead); ``'reject'``
        raises `Full` and enqueues nothing; ``'drop_oldest'`` drops the oldest
        pending data in push order (rows, or whole earlier batches) until the
        batch fits, counting every dropped row. A batch larger than the whole
        capacity is admitted only into an empty buffer: ``'block'`` waits for
        the engine to drain everything pending, ``'drop_oldest'`` drops it all,
        and ``'reject'`` always raises `Full` (split the batch or raise
        ``buffer_size``), so a rejecting source never holds more than its
        capacity. All or nothing: when it raises, no row of the batch is
        enqueued or counted as late.
        """
        table = self._conform(_as_arrow_table(data))
        if table.num_rows:
            self._enqueue(table, table.num_rows, self._event_times(table), wait)

    def _enqueue(self, data: Any, rows: int, event_times: np.ndarray | None, wait: bool) -> None:
        if self.ring.enqueue_batch(data, rows, event_times, wait):
            return
        self.ring.count_rejected(rows)
        why = "backpressure is 'reject'" if wait else "wait=False"  # wait=True: only 'reject'
        if wait and rows > self.capacity:
            raise Full(
                f"source {self.name!r}: a batch of {rows} rows is larger than the source's "
                f"capacity ({self.capacity} rows) and {why}; split it or raise buffer_size"
            )
        raise Full(
            f"source {self.name!r}: a batch of {rows} rows does not fit "
            f"({self.pending} of {self.capacity} rows pending) and {why}"
        )

    def _conform(self, table: pa.Table) -> pa.Table:
        columns = self.definition.columns
        names = table.column_names
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise SchemaError(
                f"source {self.name!r}: the Arrow batch has column(s) {twice} more than once"
            )
        missing = [c.name for c in columns if c.name not in names]
        extra = sorted(set(names) - set(self.definition.names))
        if missing or extra:
            raise SchemaError(
                f"source {self.name!r}: Arrow batch columns {names} do not match "
                f"the schema {self.definition.names} (missing {missing}, unknown {extra})"
            )
        arrays = []
        for column in columns:
            array = table.column(column.name)
            if not _castable(array.type, column.type):
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} is {array.type} in the "
                    f"Arrow batch, cannot be read as {column.type.sql}"
                )
            array = self._cast(column, array)
            if column.not_null and array.null_count:
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} is NOT NULL but the "
                    f"Arrow batch has {array.null_count} null(s)"
                )
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=self.definition.names)

    def _cast(self, column: ColumnDef, array: pa.ChunkedArray) -> pa.ChunkedArray:
        """``array`` as the column's Arrow type (strings stay as they are: the
        engine reads every string layout); times floored to microseconds and
        checked against the range Python's datetime and date hold."""
        target = _ARROW_TYPE[column.type]
        if pa.types.is_timestamp(array.type) and array.type.unit == "ns":
            # Sub-microsecond parts drop toward the past, as a row push drops
            # a pandas Timestamp's nanoseconds.
            array = pc.floor_temporal(array, 1, "microsecond")
        if array.type != target and not _is_string(array.type):
            try:
                array = array.cast(target)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} ({array.type}) does "
                    f"not fit {column.type.sql}: {exc}"
                ) from None
        if column.type in _TIME_RANGE and array.null_count < len(array):
            low, high = _TIME_RANGE[column.type]
            extremes = pc.min_max(array.cast(pa.int64() if column.type is ColumnType.TIMESTAMP
                                             else pa.int32()))
            if extremes["min"].as_py() < low or extremes["max"].as_py() > high:
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} has values outside the "
                    f"{column.type.sql} range ({_RANGE_TEXT[column.type]})"
                )
        return array

    def _event_times(self, table: pa.Table) -> np.ndarray | None:
        """The event-time column as int64 microseconds (one chunk is not
        copied); None without a watermark."""
        watermark = self.definition.watermark
        if watermark is None:
            return None
        column = table.column(watermark.column)
        if column.null_count:
            raise SchemaError(
                f"source {self.name!r}: column {watermark.column!r} is the event time (its "
                f"watermark column) and cannot be null; the Arrow batch has "
                f"{column.null_count} null(s)"
            )
        views = [
            np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=len(chunk) + chunk.offset)[
                chunk.offset:
            ]
            for chunk in column.chunks
            if len(chunk)
        ]
        return views[0] if len(views) == 1 else np.concatenate(views)

    # -- event time, lifecycle ------------------------------------------------
    def watermark(self, ts: dt.datetime | int) -> None:
        """Advance the watermark to ``ts`` (never moves it back)."""
        self.ring.advance_watermark(_to_micros(ts))

    def close(self) -> None:
        """End this source's input: the watermark moves to +inf, so every open
        window closes; further pushes raise `Closed`."""
        self.ring.close()

    def clone(self) -> Source:
        """Another handle on the same ring, e.g. for another thread; the first
        clone switches the ring to multi-producer (MPSC), losing nothing."""
        return Source(self.ring, self.definition, self.record_type)

    def has_capacity(self) -> bool:
        return self.ring.pending < self.ring.capacity

    @property
    def pending(self) -> int:
        """Rows pushed and not yet taken by the engine."""
        return self.ring.pending

    @property
    def capacity(self) -> int:
        return self.ring.capacity

    @property
    def channel(self) -> str:
        """``'spsc'`` until a second handle exists, then ``'mpsc'`` (derived)."""
        return "mpsc" if self.ring.multi_producer else "spsc"

    def __repr__(self) -> str:
        return f"<Source {self.name!r} {self.channel} pending={self.pending}/{self.capacity}>"


class SyncSource(Source):
    """A handle of a source logged with ``wal_mode='sync'``: every push returns
    only once its rows are on disk (`await_durable(source, pushed)`, given by
    the database, waits for the write-ahead log to cover the first ``pushed``
    rows). Concurrent producers share the log's fsyncs (group commit)."""

    def __init__(self, ring: _native.Ring, definition: SourceDef,
                 record_type: type | None = None,
                 await_durable: Callable[[str, int], None] | None = None) -> None:
        super().__init__(ring, definition, record_type)
        assert await_durable is not None
        self.await_durable = await_durable

    def push(self, row: Any) -> None:
        super().push(row)
        self.await_durable(self.name, self.ring.pushed)

    def try_push(self, row: Any) -> bool:
        if not super().try_push(row):
            return False
        self.await_durable(self.name, self.ring.pushed)
        return True

    def push_batch(self, rows: Sequence[Any]) -> None:
        super().push_batch(rows)
        self.await_durable(self.name, self.ring.pushed)

    def push_arrow(self, data: Any, *, wait: bool = True) -> None:
        super().push_arrow(data, wait=wait)
        self.await_durable(self.name, self.ring.pushed)

    def clone(self) -> SyncSource:
        return SyncSource(self.ring, self.definition, self.record_type, self.await_durable)


def _as_arrow_table(data: Any) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    if isinstance(data, pa.RecordBatch):
        return pa.Table.from_batches([data])
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    if hasattr(data, "__arrow_c_array__"):
        batch = pa.record_batch(data)
        return pa.Table.from_batches([batch])
    raise SchemaError(
        f"push_arrow needs an object with __arrow_c_array__ or __arrow_c_stream__ "
        f"(pyarrow, polars, pandas, duckdb, nanoarrow), got {type(data).__name__}"
    )


def _record_fields(record_type: type) -> list[tuple[str, Any]]:
    if dataclasses.is_dataclass(record_type):
        hints = typing.get_type_hints(record_type)
        return [(f.name, hints.get(f.name)) for f in dataclasses.fields(record_type)]
    if issubclass(record_type, tuple) and hasattr(record_type, "_fields"):
        hints = typing.get_type_hints(record_type)
        return [(name, hints.get(name)) for name in record_type._fields]
    raise SchemaError(f"record type {record_type!r} is neither a dataclass nor a NamedTuple")


def _check_record_type(definition: SourceDef, record_type: type) -> None:
    fields = _record_fields(record_type)
    names = [name for name, _ in fields]
    ordered = issubclass(record_type, tuple)  # NamedTuples are pushed positionally
    if (names if ordered else sorted(names)) != (
        definition.names if ordered else sorted(definition.names)
    ):
        raise SchemaError(
            f"record type {record_type.__name__} has fields {names}; source "
            f"{definition.name!r} expects {definition.names}"
            + (" in that order" if ordered else "")
        )
    for name, hint in fields:
        column = definition.column(name)
        allowed = _PYTHON_TYPE[column.type]
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if hint is None or typing.Any in options:  # unannotated or Any: anything goes
            continue
        if not any(isinstance(o, type) and issubclass(o, allowed) for o in options):
            raise SchemaError(
                f"record type {record_type.__name__}.{name} is annotated {hint!r}; column "
                f"{name!r} is {column.type.sql} "
                f"(expects {' or '.join(a.__name__ for a in allowed)})"
            )
