"""Polars SQL as the source of a view's scalar expressions.

A view's scalar SQL (filters, projections, CASE, casts, every function) means what
Polars SQL means, so Polars builds it: a sqlglot tree is written back as text in
the :class:`PolarsSQL` dialect and handed to ``pl.sql_expr`` by :func:`build`.
`laminar_polars.sql.expressions` decides which trees come here and names the
columns in them; this module knows Polars SQL itself:

* :class:`PolarsSQL`: how to write a tree so that Polars' SQL parser reads what
  the query said (PostgreSQL's spelling, which it reads, but ``TRY_CAST`` kept);
* :func:`build`: the text → ``pl.sql_expr``; Polars' own refusal (an unknown
  function, a wrong argument) becomes a `PlanError` quoting the query's text;
* which functions are not row by row in Polars SQL (:func:`is_aggregate`,
  :data:`WINDOW_FUNCTIONS`) and which give another answer each time they run
  (:func:`nondeterministic`): a view refuses both;
* what ``pl.sql_expr`` cannot build, since it must know an argument's type and
  the parser sees no schema: :func:`date_trunc` and :func:`try_parse` (``TRY_CAST``
  of a string to a TIMESTAMP or DATE), built here the way Polars SQL builds them
  in a query (``SELECT date_trunc('hour', ts) FROM t``); inside a larger
  expression they stand in the text as a placeholder column, which
  :func:`substitute` then replaces by the expression built here.

Examples
--------
>>> import polars as pl, sqlglot
>>> import laminar_polars.sql  # registers the "laminar" dialect
>>> tree = sqlglot.parse_one("split_part(s, '-', 2) || TRY_CAST(n AS VARCHAR)", read="laminar")
>>> tree.sql(dialect=PolarsSQL)
"SPLIT_PART(s, '-', 2) || TRY_CAST(n AS VARCHAR)"
>>> pl.DataFrame({"s": ["a-b"], "n": [1]}).select(build(tree).alias("x")).item()
'b1'
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import polars as pl
from sqlglot import exp
from sqlglot.dialects.postgres import Postgres

from laminar_polars.errors import PlanError
from laminar_polars.sql.semantics import node_text

if TYPE_CHECKING:
    # As in `laminar_polars.sql.dialect`: the class sqlglot binds as
    # Postgres.Generator, which a type checker does not take as a base class.
    from sqlglot.generators.postgres import PostgresGenerator as _PostgresGenerator
else:
    _PostgresGenerator = Postgres.Generator

__all__ = [
    "AGGREGATE_NAMES",
    "WINDOW_FUNCTIONS",
    "PolarsSQL",
    "build",
    "date_trunc",
    "is_aggregate",
    "nondeterministic",
    "placeholders_left",
    "substitute",
    "try_parse",
]


class PolarsSQL(Postgres):
    """Writes trees as Polars' SQL parser reads them (not for reading SQL).

    Polars SQL reads PostgreSQL's spelling, which sqlglot's PostgreSQL generator
    writes, except where PostgreSQL lacks what Polars has: sqlglot would write
    ``TRY_CAST`` as a plain (strict) ``CAST`` and ``TINYINT`` as ``SMALLINT``.
    """

    class Generator(_PostgresGenerator):
        TRANSFORMS = {
            **_PostgresGenerator.TRANSFORMS,
            exp.TryCast: lambda self, e: self.cast_sql(e, safe_prefix="TRY_"),
        }
        TYPE_MAPPING = {k: v for k, v in _PostgresGenerator.TYPE_MAPPING.items()
                        if k != exp.DType.TINYINT}


def build(tree: exp.Expr, shown: exp.Expr | None = None) -> pl.Expr:
    """``tree`` written in Polars SQL and built by ``pl.sql_expr``.

    Polars' refusal raises `PlanError` quoting ``shown`` (the query's own text
    of the expression; ``tree`` itself if not given) and Polars' reason.

    >>> import sqlglot
    >>> build(sqlglot.parse_one("md5(name)", read="laminar"))
    Traceback (most recent call last):
    ...
    laminar_polars.errors.PlanError: MD5(name): unsupported function 'md5' (a view's functions are those of Polars SQL: see docs/sql.md)
    """  # noqa: E501
    try:
        return pl.sql_expr(tree.sql(dialect=PolarsSQL))
    except pl.exceptions.PolarsError as error:
        reason = str(error).strip().split("\n")[0]
        if "unsupported function" in reason:
            reason += " (a view's functions are those of Polars SQL: see docs/sql.md)"
        raise PlanError(f"{node_text(shown if shown is not None else tree)}: {reason}") from None


def substitute(expr: pl.Expr, placeholders: Mapping[str, pl.Expr]) -> pl.Expr:
    """``expr`` with each column named in ``placeholders`` replaced by its expression.

    Polars has no public way to replace part of an expression, so this goes
    through its serialized form (``meta.serialize``), written and read by the
    same Polars in one process. Should that form ever not show a placeholder
    as a column, the placeholder stays, and the caller refuses the expression
    (`placeholders_left`).

    >>> import datetime as dt
    >>> e = substitute(pl.col("p").dt.hour() + 1, {"p": pl.col("ts").dt.truncate("1h")})
    >>> pl.DataFrame({"ts": [dt.datetime(2024, 1, 1, 10, 30)]}).select(e).item()
    11
    """
    if not placeholders_left(expr, placeholders):
        return expr
    tree = json.loads(expr.meta.serialize(format="json"))

    def replaced(node: Any) -> Any:
        if isinstance(node, dict):
            if len(node) == 1 and node.get("Column") in placeholders:
                return json.loads(placeholders[node["Column"]].meta.serialize(format="json"))
            return {key: replaced(value) for key, value in node.items()}
        if isinstance(node, list):
            return [replaced(value) for value in node]
        return node

    return pl.Expr.deserialize(io.StringIO(json.dumps(replaced(tree))), format="json")


def placeholders_left(expr: pl.Expr, placeholders: Mapping[str, pl.Expr]) -> bool:
    """Whether ``expr`` still reads a placeholder column (`substitute` failed)."""
    return any(name in placeholders for name in expr.meta.root_names())


# -- what a view refuses -------------------------------------------------------------

# Polars SQL's aggregates that sqlglot reads as plain functions (those it knows as
# aggregates are `exp.AggFunc`s): over a micro-batch they would give the batch's
# answer, broadcast to its rows.
AGGREGATE_NAMES = frozenset({
    "quantile_cont", "quantile_disc", "stdev_samp", "var", "covar", "listagg", "total",
})
# Functions that look at other rows than the current one (Polars SQL evaluates
# them over the whole frame, here a micro-batch), or change the number of rows.
WINDOW_FUNCTIONS = (exp.RowNumber, exp.Explode, exp.Unnest)

# Functions whose value is not a function of the row: now() and friends are read
# from the clock when the view is created, random() draws anew each time.
_NONDETERMINISTIC = (exp.CurrentDate, exp.CurrentTime, exp.CurrentTimestamp,
                     exp.CurrentDatetime, exp.CurrentTimestampLTZ, exp.Rand, exp.Randn,
                     exp.Randstr, exp.Uuid)


def is_aggregate(node: exp.Expr) -> bool:
    """Whether ``node`` is an aggregate function call (``sum(x)``, ``median(x)``...)."""
    if isinstance(node, exp.AggFunc):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower() in AGGREGATE_NAMES


def nondeterministic(node: exp.Expr) -> bool:
    """Whether ``node`` gives another value each time it is computed (``now()``,
    ``random()``): a view of it could not be recomputed (a restart replays the
    log; tests compare with Polars in batch) to the same rows."""
    return isinstance(node, _NONDETERMINISTIC)


# -- date_trunc ------------------------------------------------------------------------

# The units Polars SQL's DATE_TRUNC takes (singular or plural, any case) and the
# `dt.truncate` interval it truncates to.
_TRUNCATE_TO = {"microsecond": "1us", "millisecond": "1ms", "second": "1s", "minute": "1m",
                "hour": "1h", "day": "1d", "week": "1w", "month": "1mo", "quarter": "1q",
                "year": "1y"}


def date_trunc(unit: str, value: pl.Expr, dtype: pl.DataType | None, shown: str) -> pl.Expr:
    """``date_trunc(unit, value)`` as Polars SQL computes it: a TIMESTAMP truncated
    to the unit's start (weeks start on Monday), a DATE first made a TIMESTAMP.

    ``dtype`` is the type of ``value``; ``shown`` the call's text, for messages.

    >>> import datetime as dt
    >>> ts = pl.Series([dt.datetime(2024, 5, 17, 10, 45)])
    >>> pl.select(date_trunc("Quarters", pl.lit(ts), ts.dtype, "")).item()
    datetime.datetime(2024, 4, 1, 0, 0)
    """
    every = _TRUNCATE_TO.get(unit.lower().removesuffix("s"))
    if every is None:
        units = ", ".join(f"'{u}'" for u in _TRUNCATE_TO)
        raise PlanError(f"{shown}: date_trunc does not know the unit {unit!r}; it takes {units}")
    if isinstance(dtype, pl.Date):
        value = value.cast(pl.Datetime("us"))
    elif not isinstance(dtype, pl.Datetime):
        raise PlanError(f"{shown}: date_trunc needs a TIMESTAMP or DATE, got {dtype}")
    return value.dt.truncate(every)


def try_parse(value: pl.Expr, sql_type: str) -> pl.Expr:
    """``TRY_CAST(value AS TIMESTAMP|DATE)`` of a string, as Polars SQL computes it:
    the text parsed (its format inferred), null where it is not one.

    >>> texts = pl.Series(["2024-01-02", "soon"])
    >>> pl.select(try_parse(pl.lit(texts), "DATE")).to_series().to_list()
    [datetime.date(2024, 1, 2), None]
    """
    dtype = pl.Date() if sql_type == "DATE" else pl.Datetime("us")
    return value.str.strptime(dtype, strict=False)
