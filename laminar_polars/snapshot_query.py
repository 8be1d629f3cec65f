"""``db.query``: one SELECT over what views and registered tables hold now.

Polars' SQLContext answers it over a snapshot of each view's contents; its
errors are mapped onto the database's own (`SqlError`, `CatalogError`) so a
caller need not know Polars answered.
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from laminar_polars.engine.view import ViewRuntime
from laminar_polars.errors import CatalogError, SqlError

__all__ = ["query_snapshot"]


def query_snapshot(
    sql: str, tables: Mapping[str, pl.DataFrame], views: Mapping[str, ViewRuntime]
) -> pl.DataFrame:
    """Answer ``sql`` over ``tables`` and the current contents of ``views``."""
    frames: dict[str, pl.DataFrame] = dict(tables)
    frames.update({name: view.contents() for name, view in views.items()})
    try:
        return pl.SQLContext(frames).execute(sql, eager=True)
    except pl.exceptions.SQLSyntaxError as error:
        raise SqlError(str(error)) from error
    except (pl.exceptions.SQLInterfaceError, pl.exceptions.ColumnNotFoundError) as error:
        if "not found" in str(error) or isinstance(error, pl.exceptions.ColumnNotFoundError):
            raise CatalogError(f"{error} (views and tables: {sorted(frames) or 'none'})"
                               ) from error
        raise SqlError(str(error)) from error
