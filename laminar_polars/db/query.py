"""``db.query``: one SELECT over what views and registered tables hold.

The views' state is snapshot at one barrier between micro-batches (the
scheduler's `at_barrier`: references to immutable frames, cheap), so a query
sees every view as of the same moment, never half through a batch; the
views' rows are then computed from the snapshot on the caller's thread, and
Polars' SQLContext answers the query. Its errors are mapped onto the
database's own (`SqlError`, `CatalogError`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl
import sqlglot
from sqlglot import exp

from laminar_polars.engine.graph import Node, View
from laminar_polars.engine.operator import State
from laminar_polars.errors import CatalogError, SqlError

__all__ = ["query_snapshot"]

# Every node's state and every table, as of one barrier.
Snapshot = tuple[dict[Node, State], dict[str, pl.DataFrame]]
Barrier = Callable[[Callable[[], Snapshot]], Snapshot]


def _names_read(sql: str) -> set[str] | None:
    """The relation names ``sql`` reads, or None if it cannot tell."""
    try:
        tree = sqlglot.parse_one(sql, read="postgres")
    except sqlglot.errors.SqlglotError:
        return None
    return {table.name for table in tree.find_all(exp.Table)}


def query_snapshot(
    sql: str, tables: Mapping[str, pl.DataFrame], views: Mapping[str, View],
    at_barrier: Barrier,
) -> pl.DataFrame:
    """Answer ``sql`` over ``tables`` and ``views`` as of one barrier."""
    read = _names_read(sql)
    wanted = {name: view for name, view in views.items() if read is None or name in read}

    def snapshot() -> Snapshot:
        # Every node: a view's rows may come from the views it reads.
        states = {node: node.snapshot() for view in views.values() for node in view.nodes}
        return states, dict(tables)

    states, frames = at_barrier(snapshot) if wanted else ({}, dict(tables))
    frames.update({name: view.contents(states) for name, view in wanted.items()})
    try:
        return pl.SQLContext(frames).execute(sql, eager=True)
    except pl.exceptions.SQLSyntaxError as error:
        raise SqlError(str(error)) from error
    except (pl.exceptions.SQLInterfaceError, pl.exceptions.ColumnNotFoundError) as error:
        if "not found" in str(error) or isinstance(error, pl.exceptions.ColumnNotFoundError):
            known = sorted({*views, *tables}) or "none"
            raise CatalogError(f"{error} (views and tables: {known})") from error
        raise SqlError(str(error)) from error
