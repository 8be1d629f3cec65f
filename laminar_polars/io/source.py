"""`Source`: the handle users push rows and Arrow batches into (SPEC §5).

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
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from laminar_polars import _native
from laminar_polars.catalog import ColumnType, SourceDef
from laminar_polars.errors import Closed, Full, SchemaError

__all__ = ["Source", "strings_as_views"]

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
_PYTHON_TYPE = {
    ColumnType.STRING: (str,),
    ColumnType.FLOAT64: (float, int),
    ColumnType.FLOAT32: (float, int),
    ColumnType.INT64: (int,),
    ColumnType.INT32: (int,),
    ColumnType.INT16: (int,),
    ColumnType.BOOLEAN: (bool,),
    ColumnType.TIMESTAMP: (dt.datetime, int),
    ColumnType.DATE: (dt.date, int),
}

_native.set_errors(SchemaError, Full, Closed)


def strings_as_views(table: pa.Table) -> pa.Table:
    """String columns as Arrow string_view, which Polars imports without a
    copy. Converting first (pyarrow, ~2 ns a row) and importing beats letting
    Polars import UTF-8 (~5 ns a row, it copies every string)."""
    for i, field in enumerate(table.schema):
        if not pa.types.is_string_view(field.type) and _is_string(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string_view()))
    return table


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


def _to_micros(value: dt.datetime | int) -> int:
    if isinstance(value, bool) or not isinstance(value, (dt.datetime, int)):
        raise SchemaError(f"a watermark is a datetime or int microseconds, got {value!r}")
    if isinstance(value, int):
        return value
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return (value - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1)


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
        """Push a list of rows: all are checked first, so a bad row enqueues nothing.

        With ``backpressure='reject'`` a batch larger than the free room raises
        `Full` and enqueues nothing.
        """
        self.push_rows(rows)

    # -- Arrow ----------------------------------------------------------------
    def push_arrow(self, data: Any, *, wait: bool = True) -> None:
        """Push an Arrow batch: any object with ``__arrow_c_array__`` or
        ``__arrow_c_stream__`` (pyarrow, Polars, pandas, DuckDB, nanoarrow).

        Columns are matched by name; compatible types are cast (an int column
        into DOUBLE, ``timestamp[ns]`` into TIMESTAMP, ...), anything else raises
        `SchemaError` and enqueues nothing. Fixed-width columns are not copied.
        Rows older than the watermark are dropped and counted as late.

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
        capacity.
        """
        table = self._conform(_as_arrow_table(data))
        table, max_event_time = self._drop_late(table)
        if table.num_rows == 0:
            return
        if not self.ring.enqueue_batch(table, table.num_rows, max_event_time, wait):
            rows = table.num_rows
            self.ring.count_rejected(rows)
            # With wait=True only 'reject' refuses.
            why = "backpressure is 'reject'" if wait else "wait=False"
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
        names = set(table.column_names)
        missing = [c.name for c in columns if c.name not in names]
        extra = sorted(names - set(self.definition.names))
        if missing or extra:
            raise SchemaError(
                f"source {self.name!r}: Arrow batch columns {table.column_names} do not match "
                f"the schema {self.definition.names} (missing {missing}, unknown {extra})"
            )
        arrays = []
        for column in columns:
            array = table.column(column.name)
            target = _ARROW_TYPE[column.type]
            if not _castable(array.type, column.type):
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} is {array.type} in the "
                    f"Arrow batch, cannot be read as {column.type.sql}"
                )
            if array.type != target and not _is_string(array.type):
                try:
                    array = array.cast(target)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                    raise SchemaError(
                        f"source {self.name!r}: column {column.name!r} ({array.type}) does "
                        f"not fit {column.type.sql}: {exc}"
                    ) from None
            if column.not_null and array.null_count:
                raise SchemaError(
                    f"source {self.name!r}: column {column.name!r} is NOT NULL but the "
                    f"Arrow batch has {array.null_count} null(s)"
                )
            arrays.append(array)
        return pa.Table.from_arrays(arrays, names=self.definition.names)

    def _drop_late(self, table: pa.Table) -> tuple[pa.Table, int]:
        """Drop rows older than the watermark as it stood when each arrived."""
        watermark = self.definition.watermark
        if watermark is None or table.num_rows == 0:
            return table, _native.NO_WATERMARK
        column = table.column(watermark.column)
        if column.null_count:
            raise SchemaError(
                f"source {self.name!r}: column {watermark.column!r} is the event time (its "
                f"watermark column) and cannot be null; the Arrow batch has "
                f"{column.null_count} null(s)"
            )
        current = self.ring.watermark
        if current == _native.CLOSED_WATERMARK:
            raise self.ring.closed_error(f"source {self.name!r} is closed")
        late_count, max_event_time, keep = _native.late_rows(
            _event_times(column), current, watermark.delay_us
        )
        if late_count:
            self.ring.count_late(late_count)
            table = table.filter(pa.array(np.frombuffer(keep, dtype=np.bool_)))
        return table, max_event_time

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


def _event_times(column: pa.ChunkedArray) -> np.ndarray:
    """A timestamp[us] column's int64 microseconds; one chunk is not copied."""
    views = [
        np.frombuffer(chunk.buffers()[1], dtype=np.int64, count=len(chunk) + chunk.offset)[
            chunk.offset:
        ]
        for chunk in column.chunks
        if len(chunk)
    ]
    return views[0] if len(views) == 1 else np.concatenate(views)


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
        if hint is None:
            continue
        column = definition.column(name)
        allowed = _PYTHON_TYPE[column.type]
        options = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
        if not any(isinstance(o, type) and issubclass(o, allowed) for o in options):
            raise SchemaError(
                f"record type {record_type.__name__}.{name} is annotated {hint!r}; column "
                f"{name!r} is {column.type.sql} "
                f"(expects {' or '.join(a.__name__ for a in allowed)})"
            )
