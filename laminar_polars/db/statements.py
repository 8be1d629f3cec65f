"""Running parsed SQL statements: each statement kind mapped onto the runtime
operation that carries it out.

``CREATE`` statements become the runtime's ``add_*`` calls, ``DROP`` its
``drop_*`` calls, ``SELECT`` its ``query``; ``SHOW`` and ``DESCRIBE`` read the
catalog, ``EXPLAIN`` plans without running.

Examples
--------
>>> from laminar_polars.config import Config
>>> from laminar_polars.db.runtime import Runtime
>>> from laminar_polars.sql import parse_statements
>>> runtime = Runtime(Config().validate())
>>> for statement in parse_statements("CREATE SOURCE t (x BIGINT); DROP SINK IF EXISTS t"):
...     run_statement(runtime, statement)
>>> run_statement(runtime, *parse_statements("SHOW SOURCES"))["name"].to_list()
['t']
"""

from __future__ import annotations

from collections.abc import Callable, Collection

import polars as pl

from laminar_polars.db.introspection import show_names
from laminar_polars.db.runtime import Runtime
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

__all__ = ["run_statement"]


def run_statement(runtime: Runtime, statement: Statement) -> pl.DataFrame | None:
    """Carry out one statement on ``runtime``; a frame for SHOW / DESCRIBE /
    EXPLAIN / SELECT, else None."""
    catalog = runtime.catalog
    if isinstance(statement, CreateSource):
        if statement.if_not_exists and statement.source.name in catalog.sources:
            return None
        runtime.add_source(statement.source)
    elif isinstance(statement, CreateSink):
        if statement.if_not_exists and statement.sink.name in catalog.sinks:
            return None
        runtime.add_sink(statement.sink)
    elif isinstance(statement, Drop):
        _drop(runtime, statement)
    elif isinstance(statement, Show):
        return show_names(catalog, statement.kind)
    elif isinstance(statement, Describe):
        return runtime.describe(statement.name)
    elif isinstance(statement, CreateMaterializedView):
        if statement.if_not_exists and statement.name in catalog.views:
            return None
        plan = plan_select(statement.query, runtime.relation, statement.emit,
                           statement.state_ttl_us)
        runtime.add_view(statement.name, plan, statement.sql, statement.retention)
    elif isinstance(statement, Explain):
        text = explain_select(statement.query, runtime.relation)
        return pl.DataFrame({"plan": text.splitlines()}, schema={"plan": pl.String})
    elif isinstance(statement, Query):
        return runtime.query(statement.query.sql(dialect="postgres"))
    return None


def _drop(runtime: Runtime, statement: Drop) -> None:
    # Under the lock, so nothing is created or dropped between the existence
    # check (which decides IF EXISTS) and the drop. Dropping an unknown name
    # without IF EXISTS is left to the drop method, which raises the catalog's
    # "unknown" error before it changes anything. IF EXISTS looks for an object
    # of the statement's kind only: `DROP TABLE IF EXISTS s` leaves source s alone.
    catalog = runtime.catalog
    with runtime.lock:
        kinds: dict[str, tuple[Collection[str], Callable[[str], None]]] = {
            "sink": (catalog.sinks, runtime.drop_sink),
            "source": (catalog.sources, runtime.drop_source),
            "materialized view": (catalog.views, runtime.drop_view),
            "table": (catalog.tables, runtime.drop_table),
        }
        existing, drop = kinds[statement.kind]
        if statement.name in existing or not statement.if_exists:
            drop(statement.name)
