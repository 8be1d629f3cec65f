"""What the database reports about itself: its names, a source's columns, its
channels and its counters.

These build the frames of ``SHOW`` and ``DESCRIBE`` and the dictionaries of
``db.topology()`` and ``db.metrics()`` from the catalog and the pieces the
`Runtime` holds; they only read, and the runtime calls them under its lock
where the pieces may change underneath.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import polars as pl

from laminar_polars import _native
from laminar_polars.catalog import Catalog, ColumnType, SourceDef
from laminar_polars.engine.graph import View
from laminar_polars.errors import CatalogError, SchemaError
from laminar_polars.io.sink import Sink

__all__ = [
    "describe", "describe_source", "metrics_of", "show_names", "topology_of", "watermark_value",
]


_EPOCH = dt.datetime(1970, 1, 1)
_MIN_MICROS = (dt.datetime.min - _EPOCH) // dt.timedelta(microseconds=1)
_MAX_MICROS = (dt.datetime.max - _EPOCH) // dt.timedelta(microseconds=1)


def watermark_value(micros: int) -> dt.datetime:
    """A native watermark as users see it, always a `datetime.datetime`:
    ``datetime.min`` before any event time was seen, ``datetime.max`` once the
    input has ended (as Flink and Kafka Streams use Long.MIN_VALUE / MAX_VALUE).

    >>> watermark_value(_native.NO_WATERMARK), watermark_value(_native.CLOSED_WATERMARK)
    (datetime.datetime(1, 1, 1, 0, 0), datetime.datetime(9999, 12, 31, 23, 59, 59, 999999))
    >>> watermark_value(1_000_000)
    datetime.datetime(1970, 1, 1, 0, 0, 1)
    """
    if micros == _native.NO_WATERMARK or micros <= _MIN_MICROS:
        return dt.datetime.min
    if micros == _native.CLOSED_WATERMARK or micros >= _MAX_MICROS:
        return dt.datetime.max
    return _EPOCH + dt.timedelta(microseconds=micros)


def show_names(catalog: Catalog, kind: str) -> pl.DataFrame:
    """``SHOW <kind>``: the sorted names of that kind of object."""
    kinds: dict[str, Mapping[str, object]] = {
        "sources": catalog.sources,
        "sinks": catalog.sinks,
        "materialized views": catalog.views,
        "tables": catalog.tables,
    }
    return pl.DataFrame({"name": sorted(kinds[kind])}, schema={"name": pl.String})


_DESCRIBE_SCHEMA = pl.Schema({"column": pl.String(), "type": pl.String(),
                              "nullable": pl.Boolean(), "watermark_delay": pl.Duration("us")})


def describe(catalog: Catalog, name: str) -> pl.DataFrame:
    """``DESCRIBE name``: one row per column of a source, materialized view or
    registered table: its name, type, nullability and watermark delay.

    ``type`` is the SQL name of a source column type, else the Polars type
    (``UInt32`` for a ``count``). Only a source declares nullability; a view's
    or table's ``nullable`` is null (unknown), as is ``watermark_delay`` of
    every column but a source's watermark column.
    """
    if name in catalog.sources:
        return describe_source(catalog.sources[name])
    if name in catalog.views:
        schema = catalog.views[name].plan.schema
    elif name in catalog.tables:
        schema = catalog.tables[name].schema
    else:
        known = {**catalog.sources, **catalog.views, **catalog.tables}
        raise CatalogError(catalog.unknown_message("source, materialized view or table",
                                                   name, known))
    return pl.DataFrame({
        "column": list(schema),
        "type": [_type_name(dtype) for dtype in schema.values()],
        "nullable": [None] * len(schema),
        "watermark_delay": [None] * len(schema),
    }, schema=_DESCRIBE_SCHEMA)


def _type_name(dtype: pl.DataType) -> str:
    try:
        return ColumnType.from_polars(dtype).sql
    except SchemaError:
        return str(dtype)


def describe_source(definition: SourceDef) -> pl.DataFrame:
    """Columns of a source: name, SQL type, nullability, watermark."""
    watermark = definition.watermark
    return pl.DataFrame({
        "column": definition.names,
        "type": [c.type.sql for c in definition.columns],
        "nullable": [not c.not_null for c in definition.columns],
        "watermark_delay": [
            watermark.delay if watermark and watermark.column == c.name else None
            for c in definition.columns
        ],
    }, schema=_DESCRIBE_SCHEMA)


def topology_of(
    catalog: Catalog,
    rings: dict[str, _native.Ring],
    views: dict[str, View],
    sinks: dict[str, Sink],
) -> dict[str, Any]:
    """Every channel and its derived kind (see `LaminarDB.topology`)."""
    return {
        "sources": {
            name: {
                "channel": "mpsc" if ring.multi_producer else "spsc",
                "producers": ring.producers,
                "capacity": ring.capacity,
                "readers": catalog.readers_of(name),
            }
            for name, ring in rings.items()
        },
        "views": {
            name: {"inputs": view.inputs, "readers": catalog.readers_of(name)}
            for name, view in views.items()
        },
        "sinks": {
            name: {
                "input": catalog.sinks[name].input,
                "channel": sink.kind,
                "subscriptions": len(sink.metrics()),
            }
            for name, sink in sinks.items()
        },
    }


def _join_metrics(view: View, sources: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A view's joins' counters: ``joins``, one dict per join (inner first),
    and ``join``, its outermost one's. A side's ``late`` rows are those the
    join dropped plus those the sources it reads dropped on admission."""
    joins = view.joins
    if not joins:
        return {}
    for join in joins:
        for side in ("left", "right"):
            counters = join.get(side)
            if isinstance(counters, dict):
                counters["late"] += sum(int(sources[name].get("late", 0))
                                        for name in counters["inputs"] if name in sources)
    return {"joins": joins, "join": joins[-1]}


def metrics_of(
    rings: dict[str, _native.Ring],
    views: dict[str, View],
    sinks: dict[str, Sink],
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Counters of every source, view and sink (see `LaminarDB.metrics`);
    ``engine`` is passed through as the ``'engine'`` entry. Watermarks are
    datetimes (see `watermark_value`)."""
    sources = {name: {**ring.stats(), "watermark": watermark_value(ring.watermark)}
               for name, ring in rings.items()}
    return {
        "sources": sources,
        "views": {
            name: {"rows_in": view.rows_in, "rows_out": view.rows_out,
                   "state_rows": view.state_rows, "pending_rows": view.pending_rows,
                   "retained_rows": view.retained_rows,
                   "watermark": watermark_value(view.watermark),
                   **_join_metrics(view, sources)}
            for name, view in views.items()
        },
        "sinks": {name: {"subscriptions": s.metrics()} for name, s in sinks.items()},
        "engine": engine,
    }
