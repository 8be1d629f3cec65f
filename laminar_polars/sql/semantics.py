"""What the engine reads from SQL text itself: INTERVAL lengths, and a node's text.

A view's scalar expressions are Polars SQL's to build
(`laminar_polars.sql.polars_sql`); what streaming owns is read here: an
``INTERVAL``'s length in microseconds, for window sizes, watermark delays and
join bounds, which must be fixed durations. :func:`node_text`, the SQL text
every planner message quotes, lives here as the lowest module that needs it.
"""

from __future__ import annotations

import datetime as dt

from sqlglot import exp

from laminar_polars.config import parse_duration
from laminar_polars.errors import ConfigError, PlanError

__all__ = ["interval_us", "node_text"]


def node_text(node: exp.Expr) -> str:
    """The SQL text of ``node``, for messages."""
    from laminar_polars.sql.dialect import Laminar

    text = node.sql(dialect=Laminar)
    return text if len(text) <= 80 else text[:77] + "..."


def interval_us(node: exp.Expr) -> int:
    """``INTERVAL '1' MINUTE``, ``INTERVAL '500ms'``, ``'10 seconds'`` → microseconds.

    >>> import sqlglot, laminar_polars.sql
    >>> interval_us(sqlglot.parse_one("INTERVAL '100' MILLISECOND", read="laminar"))
    100000
    """
    if isinstance(node, exp.Interval):
        unit = node.args.get("unit")
        if unit is not None and not isinstance(unit, exp.Var):
            raise PlanError(f"unsupported interval {node_text(node)}")
        text = f"{node.this.name} {unit.name}" if unit is not None else node.this.name
    elif isinstance(node, exp.Literal) and node.is_string:
        text = node.this
    else:
        raise PlanError(f"expected an INTERVAL, got {node_text(node)}")
    try:
        delta = parse_duration(text, what="INTERVAL")
    except ConfigError as error:
        raise PlanError(f"{error} (months and years are not fixed durations)") from None
    return delta // dt.timedelta(microseconds=1)
