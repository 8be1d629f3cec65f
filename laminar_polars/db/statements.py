"""Running parsed SQL statements: each statement kind mapped onto the database
operation that carries it out.

The operations are `LaminarDB`'s; `StatementTarget` names the ones statements
use, so this module needs no import of `laminar_polars.db.database` (which
imports it).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import AbstractContextManager
from typing import Protocol

import polars as pl

from laminar_polars.catalog import Catalog, SinkDef, SourceDef
from laminar_polars.config import Retention
from laminar_polars.db.introspection import show_names
from laminar_polars.plan import Node, Scan
from laminar_polars.sql import (
    CreateMaterializedView,
    CreateSink,
    CreateSource,
    Describe,
    Drop,
    Explain,
    Query,
    Show,
    Statement,
    explain_select,
    plan_select,
)

__all__ = ["StatementTarget", "run_statement"]


class StatementTarget(Protocol):
    """The database operations statements map onto (`LaminarDB` has them)."""

    @property
    def catalog(self) -> Catalog: ...

    @property
    def _lock(self) -> AbstractContextManager[object]: ...

    def _add_source(self, definition: SourceDef) -> None: ...

    def _add_sink(self, definition: SinkDef) -> None: ...

    def _add_view(self, name: str, plan: Node, sql: str | None,
                  retention: Retention | None = None) -> None: ...

    def _relation(self, name: str) -> Scan: ...

    def _query(self, sql: str) -> pl.DataFrame: ...

    def describe(self, name: str) -> pl.DataFrame: ...

    def drop_sink(self, name: str) -> None: ...

    def drop_source(self, name: str) -> None: ...

    def drop_materialized_view(self, name: str) -> None: ...

    def drop_table(self, name: str) -> None: ...


def run_statement(db: StatementTarget, statement: Statement) -> pl.DataFrame | None:
    """Carry out one statement; a frame for SHOW / DESCRIBE / EXPLAIN / SELECT,
    else None."""
    if isinstance(statement, CreateSource):
        if statement.if_not_exists and statement.source.name in db.catalog.sources:
            return None
        db._add_source(statement.source)
    elif isinstance(statement, CreateSink):
        if statement.if_not_exists and statement.sink.name in db.catalog.sinks:
            return None
        db._add_sink(statement.sink)
    elif isinstance(statement, Drop):
        _drop(db, statement)
    elif isinstance(statement, Show):
        return show_names(db.catalog, statement.kind)
    elif isinstance(statement, Describe):
        return db.describe(statement.name)
    elif isinstance(statement, CreateMaterializedView):
        if statement.if_not_exists and statement.name in db.catalog.views:
            return None
        plan = plan_select(statement.query, db._relation, statement.emit)
        db._add_view(statement.name, plan, statement.sql, statement.retention)
    elif isinstance(statement, Explain):
        text = explain_select(statement.query, db._relation)
        return pl.DataFrame({"plan": text.splitlines()}, schema={"plan": pl.String})
    elif isinstance(statement, Query):
        return db._query(statement.query.sql(dialect="postgres"))
    return None


def _drop(db: StatementTarget, statement: Drop) -> None:
    # Under the lock, so nothing is created or dropped between the existence
    # check (which decides IF EXISTS) and the drop. Dropping an unknown name
    # without IF EXISTS is left to the drop method, which raises the catalog's
    # "unknown" error before it changes anything. IF EXISTS looks for an object
    # of the statement's kind only: `DROP TABLE IF EXISTS s` leaves source s alone.
    with db._lock:
        kinds: dict[str, tuple[Collection[str], Callable[[str], None]]] = {
            "sink": (db.catalog.sinks, db.drop_sink),
            "source": (db.catalog.sources, db.drop_source),
            "materialized view": (db.catalog.views, db.drop_materialized_view),
            "table": (db.catalog.tables, db.drop_table),
        }
        existing, drop = kinds[statement.kind]
        if statement.name in existing or not statement.if_exists:
            drop(statement.name)
