"""Catalog definitions in the other shapes they take.

`source_definition` turns ``db.create_source``'s arguments (a Polars schema)
into the `SourceDef` that ``CREATE SOURCE`` also yields; `table_frame` turns
what ``db.register_table`` was given into the frame the catalog keeps;
`relation_of` gives a source or view as a plan sees it, a `Scan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from laminar_polars.catalog import Catalog, ColumnDef, ColumnType, SourceDef
from laminar_polars.config import SourceConfig, Watermark
from laminar_polars.errors import CatalogError, SchemaError
from laminar_polars.plan import Scan

__all__ = ["relation_of", "source_definition", "table_frame"]


def source_definition(
    name: str,
    schema: Mapping[str, Any] | pl.Schema,
    watermark: Watermark | None,
    config: SourceConfig | None,
    not_null: tuple[str, ...] | list[str],
) -> SourceDef:
    """Source ``name`` with ``schema``'s columns; ``watermark`` overrides the
    one in ``config``, which is copied, not changed."""
    config = SourceConfig(**vars(config)) if config else SourceConfig()
    if watermark is not None:
        config.watermark = watermark
    config.validate()
    unknown = set(not_null) - set(schema)
    if unknown:
        raise CatalogError(f"not_null names unknown column(s) {sorted(unknown)}")
    columns = [
        ColumnDef(column, ColumnType.from_polars(dtype), column in not_null)
        for column, dtype in dict(schema).items()
    ]
    return SourceDef(name, columns, config)


def table_frame(name: str, frame: object) -> pl.DataFrame:
    """What ``db.register_table(name, frame)`` keeps: a `polars.DataFrame` of its
    own (a caller changing ``frame`` later changes nothing), from a DataFrame or
    anything exporting an Arrow stream (``__arrow_c_stream__``: a pyarrow Table
    or RecordBatchReader, a pandas DataFrame, ...)."""
    if isinstance(frame, pl.DataFrame):
        return frame.clone()
    if hasattr(frame, "__arrow_c_stream__"):
        try:
            return pl.DataFrame(frame)
        except Exception as error:  # whatever the exporter raised
            raise SchemaError(f"table {name!r}: cannot read {type(frame).__name__} "
                              f"as an Arrow stream: {error}") from error
    raise SchemaError(
        f"table {name!r}: expected a polars.DataFrame or an object with __arrow_c_stream__ "
        f"(a pyarrow Table, a pandas DataFrame, ...), got {type(frame).__name__}"
    )


def relation_of(catalog: Catalog, name: str) -> Scan:
    """How a plan sees source, view or table ``name``: its schema and
    event-time column (a table: static rows, none)."""
    if name in catalog.sources:
        definition = catalog.sources[name]
        watermark = definition.watermark
        return Scan(name, definition.polars_schema, watermark.column if watermark else None)
    if name in catalog.views:
        plan = catalog.views[name].plan
        return Scan(name, plan.schema, plan.time_column, plan.appends_only)
    if name in catalog.tables:
        return Scan(name, catalog.tables[name].schema, table=True)
    known = {**catalog.sources, **catalog.views}
    raise CatalogError(catalog.unknown_message("source or materialized view", name, known))
