"""Catalog definitions in the other shapes they take.

`source_definition` turns ``db.create_source``'s arguments (a Polars schema)
into the `SourceDef` that ``CREATE SOURCE`` also yields; `relation_of` gives a
source or view as a plan sees it, a `Scan`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from laminar_polars.catalog import Catalog, ColumnDef, ColumnType, SourceDef
from laminar_polars.config import SourceConfig, Watermark
from laminar_polars.errors import CatalogError
from laminar_polars.plan import Scan

__all__ = ["relation_of", "source_definition"]


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


def relation_of(catalog: Catalog, name: str) -> Scan:
    """How a plan sees source or view ``name``: its schema and event-time column."""
    if name in catalog.sources:
        definition = catalog.sources[name]
        watermark = definition.watermark
        return Scan(name, definition.polars_schema, watermark.column if watermark else None)
    if name in catalog.views:
        plan = catalog.views[name].plan
        return Scan(name, plan.schema, plan.time_column, plan.appends_only)
    known = {**catalog.sources, **catalog.views}
    raise CatalogError(catalog._unknown("source or materialized view", name, known))
