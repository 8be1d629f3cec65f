"""SQL front end: the ``laminar`` sqlglot dialect and the statements it yields.

>>> from laminar_polars.sql import Show, parse_statements
>>> parse_statements("SHOW SOURCES") == [Show("sources")]
True
"""

from __future__ import annotations

from laminar_polars.sql.ddl import (
    CreateMaterializedView,
    CreateSink,
    CreateSource,
    Describe,
    Drop,
    Explain,
    Query,
    Show,
    Statement,
    parse_statements,
)
from laminar_polars.sql.dialect import Laminar
from laminar_polars.sql.select import explain_select, plan_select

__all__ = [
    # ddl
    "CreateMaterializedView",
    "CreateSink",
    "CreateSource",
    "Describe",
    "Drop",
    "Explain",
    "Query",
    "Show",
    "Statement",
    "parse_statements",
    # dialect
    "Laminar",
    # select
    "explain_select",
    "plan_select",
]
