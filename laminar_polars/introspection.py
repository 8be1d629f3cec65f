"""What the database reports about itself: its names, a source's columns, its
channels and its counters.

These build the frames of ``SHOW`` and ``DESCRIBE`` and the dictionaries of
``db.topology()`` and ``db.metrics()`` from the pieces `LaminarDB` holds; they
only read, and the database calls them under its lock where the pieces may
change underneath.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl

from laminar_polars import _native
from laminar_polars.catalog import Catalog, SourceDef
from laminar_polars.engine.view import ViewRuntime
from laminar_polars.io.sink import Sink

__all__ = ["describe_source", "metrics_of", "show_names", "topology_of", "watermark_value"]


def watermark_value(micros: int) -> dt.datetime | float | None:
    """A native watermark as users see it: None before the first one, ``inf``
    once the input has ended."""
    if micros == _native.NO_WATERMARK:
        return None
    if micros == _native.CLOSED_WATERMARK:
        return float("inf")
    return dt.datetime(1970, 1, 1) + dt.timedelta(microseconds=micros)


def show_names(catalog: Catalog, kind: str) -> pl.DataFrame:
    """``SHOW <kind>``: the sorted names of that kind of object."""
    names = {
        "sources": catalog.sources,
        "sinks": catalog.sinks,
        "materialized views": catalog.views,
        "tables": catalog.tables,
    }[kind]
    return pl.DataFrame({"name": sorted(names)}, schema={"name": pl.String})


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
    }, schema={"column": pl.String, "type": pl.String, "nullable": pl.Boolean,
               "watermark_delay": pl.Duration("us")})


def topology_of(
    catalog: Catalog,
    rings: dict[str, _native.Ring],
    views: dict[str, ViewRuntime],
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
            name: {"input": view.input, "readers": catalog.readers_of(name)}
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


def metrics_of(
    rings: dict[str, _native.Ring],
    views: dict[str, ViewRuntime],
    sinks: dict[str, Sink],
    engine: dict[str, Any],
) -> dict[str, Any]:
    """Counters of every source, view and sink (see `LaminarDB.metrics`);
    ``engine`` is passed through as the ``'engine'`` entry."""
    return {
        "sources": {
            name: {**ring.stats(), "watermark": watermark_value(ring.watermark)}
            for name, ring in rings.items()
        },
        "views": {
            name: {"rows_in": view.rows_in, "rows_out": view.rows_out,
                   "state_rows": view.state_rows, "pending_rows": view.pending_rows,
                   "watermark": watermark_value(view.watermark)}
            for name, view in views.items()
        },
        "sinks": {name: {"subscriptions": s.metrics()} for name, s in sinks.items()},
        "engine": engine,
    }
