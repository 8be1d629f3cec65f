"""What the database knows about: column types, sources, sinks and their names.

The catalog holds definitions only; the running pieces (rings, subscriptions)
are built from them by :mod:`laminar_polars.db.runtime`. Column types are given by
their SQL name or by a Polars dtype, and map one-to-one onto the native ring's
type codes.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.catalog import ColumnType
>>> ColumnType.from_sql("VARCHAR") is ColumnType.from_polars(pl.String)
True
>>> ColumnType.from_sql("TIMESTAMP").polars
Datetime(time_unit='us', time_zone=None)
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable
from typing import Any

import polars as pl

from laminar_polars import _html
from laminar_polars.config import UNBOUNDED, Retention, SourceConfig, Watermark
from laminar_polars.errors import CatalogError, SchemaError

__all__ = ["Catalog", "ColumnDef", "ColumnType", "SinkDef", "SourceDef", "ViewDef", "type_text"]


class ColumnType(enum.Enum):
    """A column type of a source; the value is the native ring's type code."""

    STRING = 0
    FLOAT64 = 1
    FLOAT32 = 2
    INT64 = 3
    INT32 = 4
    INT16 = 5
    BOOLEAN = 6
    TIMESTAMP = 7
    DATE = 8

    @property
    def code(self) -> int:
        return self.value

    @property
    def polars(self) -> pl.DataType:
        return _POLARS[self]

    @property
    def sql(self) -> str:
        return _SQL_NAME[self]

    @property
    def ring_width(self) -> int:
        """Bytes a value takes in a ring slot (a string: offset and length; its
        bytes live in the ring's arena)."""
        return _RING_WIDTH[self]

    @classmethod
    def from_sql(cls, name: str) -> ColumnType:
        try:
            return _FROM_SQL[name.strip().upper()]
        except KeyError:
            known = ", ".join(sorted(_FROM_SQL))
            raise SchemaError(
                f"unsupported column type {name!r}; expected one of {known}"
            ) from None

    @classmethod
    def from_polars(cls, dtype: Any) -> ColumnType:
        if isinstance(dtype, type) and issubclass(dtype, pl.DataType):
            dtype = dtype()  # pl.Int64 → Int64(); pl.Datetime → Datetime("us")
        for column_type, polars_type in _POLARS.items():
            if dtype == polars_type:
                return column_type
        supported = ", ".join(str(t) for t in _POLARS.values())
        raise SchemaError(f"unsupported column dtype {dtype!r}; expected one of {supported}")


def type_text(dtype: pl.DataType) -> str:
    """A column type as ``DESCRIBE`` names it: the SQL name of a source type,
    else the Polars type.

    >>> type_text(pl.Datetime("us")), type_text(pl.UInt32())
    ('TIMESTAMP', 'UInt32')
    """
    try:
        return ColumnType.from_polars(dtype).sql
    except SchemaError:
        return str(dtype)


_POLARS: dict[ColumnType, pl.DataType] = {
    ColumnType.STRING: pl.String(),
    ColumnType.FLOAT64: pl.Float64(),
    ColumnType.FLOAT32: pl.Float32(),
    ColumnType.INT64: pl.Int64(),
    ColumnType.INT32: pl.Int32(),
    ColumnType.INT16: pl.Int16(),
    ColumnType.BOOLEAN: pl.Boolean(),
    ColumnType.TIMESTAMP: pl.Datetime("us"),
    ColumnType.DATE: pl.Date(),
}
_SQL_NAME = {
    ColumnType.STRING: "VARCHAR",
    ColumnType.FLOAT64: "DOUBLE",
    ColumnType.FLOAT32: "REAL",
    ColumnType.INT64: "BIGINT",
    ColumnType.INT32: "INTEGER",
    ColumnType.INT16: "SMALLINT",
    ColumnType.BOOLEAN: "BOOLEAN",
    ColumnType.TIMESTAMP: "TIMESTAMP",
    ColumnType.DATE: "DATE",
}
_RING_WIDTH = {
    ColumnType.STRING: 16,
    ColumnType.FLOAT64: 8, ColumnType.INT64: 8, ColumnType.TIMESTAMP: 8,
    ColumnType.FLOAT32: 4, ColumnType.INT32: 4, ColumnType.DATE: 4,
    ColumnType.INT16: 2,
    ColumnType.BOOLEAN: 1,
}
_FROM_SQL = {
    **{name: ColumnType.STRING for name in ("VARCHAR", "TEXT", "STRING")},
    **{name: ColumnType.FLOAT64 for name in ("DOUBLE", "FLOAT8", "DOUBLE PRECISION")},
    **{name: ColumnType.FLOAT32 for name in ("REAL", "FLOAT4", "FLOAT")},
    **{name: ColumnType.INT64 for name in ("BIGINT", "INT8")},
    **{name: ColumnType.INT32 for name in ("INT", "INTEGER", "INT4")},
    **{name: ColumnType.INT16 for name in ("SMALLINT", "INT2")},
    **{name: ColumnType.BOOLEAN for name in ("BOOLEAN", "BOOL")},
    "TIMESTAMP": ColumnType.TIMESTAMP,
    "DATE": ColumnType.DATE,
}


@dataclasses.dataclass(frozen=True)
class ColumnDef:
    """One column of a source: name, type, and whether nulls are refused."""

    name: str
    type: ColumnType
    not_null: bool = False


@dataclasses.dataclass
class SourceDef:
    """A source: its columns, optional watermark, and settings."""

    name: str
    columns: list[ColumnDef]
    config: SourceConfig = dataclasses.field(default_factory=SourceConfig)

    def __post_init__(self) -> None:
        if not self.columns:
            raise SchemaError(f"source {self.name!r} needs at least one column")
        seen: set[str] = set()
        for column in self.columns:
            if column.name in seen:
                raise SchemaError(f"source {self.name!r}: column {column.name!r} appears twice")
            seen.add(column.name)
        watermark = self.config.watermark
        if watermark is not None:
            column = self.column(watermark.column)
            if column.type is not ColumnType.TIMESTAMP:
                raise SchemaError(
                    f"source {self.name!r}: watermark column {watermark.column!r} must be "
                    f"TIMESTAMP, not {column.type.sql}"
                )

    @property
    def watermark(self) -> Watermark | None:
        return self.config.watermark

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def polars_schema(self) -> pl.Schema:
        return pl.Schema({c.name: c.type.polars for c in self.columns})

    def ring_bytes(self, capacity: int) -> int:
        """Bytes the native ring of ``capacity`` rows allocates (and touches) up
        front: per slot 8 bytes of bookkeeping plus each column's value and
        validity byte, and with any string column a string arena of 64 bytes a
        slot (at least 64 KiB), rounded up to a power of two.

        >>> SourceDef("s", [ColumnDef("x", ColumnType.INT64)]).ring_bytes(1024)
        17408
        """
        slot = 8 + sum(c.type.ring_width + 1 for c in self.columns)
        arena = 0
        if any(c.type is ColumnType.STRING for c in self.columns):
            arena = 1 << (max(capacity * 64, 1 << 16) - 1).bit_length()
        return capacity * slot + arena

    def column(self, name: str) -> ColumnDef:
        for column in self.columns:
            if column.name == name:
                return column
        raise SchemaError(f"source {self.name!r} has no column {name!r}; columns: {self.names}")


@dataclasses.dataclass(frozen=True)
class ViewDef:
    """A materialized view: its plan (a `laminar_polars.plan` node), the
    relations it reads, and the SQL that defined it (None for a LazyFrame)."""

    name: str
    plan: Any
    inputs: tuple[str, ...]
    sql: str | None = None
    retention: Retention = UNBOUNDED

    def _repr_html_(self) -> str:
        """The notebook view: what the view reads, its plan's kind, its columns
        and the SQL that defined it."""
        emit = getattr(self.plan, "emit", None)
        kind = type(self.plan).__name__ + (f", emit {emit}" if emit else "")
        columns = ", ".join(f"{name} {type_text(dtype)}"
                            for name, dtype in self.plan.schema.items())
        parts = [f"<div>{_html.escape(columns)}</div>"]
        if self.sql:
            parts.append(f'<pre style="margin:2px 0;white-space:pre-wrap">'
                         f"{_html.escape(self.sql)}</pre>")
        return _html.block(f"materialized view {self.name}", parts,
                           f"reads {', '.join(self.inputs)} · {kind}")


@dataclasses.dataclass(frozen=True)
class SinkDef:
    """A sink reading the output of a source or materialized view."""

    name: str
    input: str
    changelog: bool = False


class Catalog:
    """Names of every source, materialized view, sink and table, one namespace.

    Sources, views and tables share a namespace (a view can be read like a
    source); sinks have their own.
    """

    def __init__(self) -> None:
        self.sources: dict[str, SourceDef] = {}
        self.views: dict[str, ViewDef] = {}
        self.tables: dict[str, pl.DataFrame] = {}
        self.sinks: dict[str, SinkDef] = {}

    def relation_kind(self, name: str) -> str | None:
        """'source', 'materialized view' or 'table' for a readable name, else None."""
        if name in self.sources:
            return "source"
        if name in self.views:
            return "materialized view"
        if name in self.tables:
            return "table"
        return None

    def check_new_relation(self, name: str) -> None:
        kind = self.relation_kind(name)
        if kind is not None:
            raise CatalogError(f"{kind} {name!r} already exists")

    def check_new_sink(self, name: str) -> None:
        if name in self.sinks:
            raise CatalogError(f"sink {name!r} already exists")

    def readers_of(self, name: str) -> list[str]:
        """Names of sinks and views that read ``name`` directly."""
        readers = [s.name for s in self.sinks.values() if s.input == name]
        readers += [v for v, d in self.views.items() if name in d.inputs]
        return readers

    def source(self, name: str) -> SourceDef:
        try:
            return self.sources[name]
        except KeyError:
            raise CatalogError(self.unknown_message("source", name, self.sources)) from None

    def table(self, name: str) -> pl.DataFrame:
        """Registered table ``name``; a source or view of that name is not one."""
        try:
            return self.tables[name]
        except KeyError:
            kind = self.relation_kind(name)
            if kind is not None:
                raise CatalogError(f"{name!r} is a {kind}, not a table; "
                                   f"DROP {kind.upper()} drops it") from None
            raise CatalogError(self.unknown_message("table", name, self.tables)) from None

    def sink(self, name: str) -> SinkDef:
        try:
            return self.sinks[name]
        except KeyError:
            raise CatalogError(self.unknown_message("sink", name, self.sinks)) from None

    @staticmethod
    def unknown_message(kind: str, name: str, known: Iterable[str]) -> str:
        """The message of the `CatalogError` for a name that is not there:
        what was looked for, and every name of that kind there is.

        >>> Catalog.unknown_message("sink", "out", {"raw": None, "bars": None})
        "unknown sink 'out' (known: bars, raw)"
        >>> Catalog.unknown_message("table", "fx", [])
        "unknown table 'fx' (known: none)"
        """
        names = ", ".join(sorted(known)) or "none"
        return f"unknown {kind} {name!r} (known: {names})"
