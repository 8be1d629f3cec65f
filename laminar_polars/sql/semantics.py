"""What SQL's constants, operators and functions mean in Polars, one node at a time.

These are the pieces of SPEC §3 that need neither a schema nor a walk of the
tree: a literal's value, a string literal read as a TIMESTAMP or DATE, an
INTERVAL's length, a CAST's target type, and the Polars form of each operator
and function that has a direct counterpart (SQL's ``%`` and ``LIKE`` are spelled
out here). :class:`~laminar_polars.sql.expressions.Translator` walks a tree and
applies them; the aggregation planner reads window sizes here directly.
:func:`node_text`, the SQL text every planner message quotes, lives here as the
lowest module that needs it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable

import polars as pl
from sqlglot import exp

from laminar_polars.catalog import ColumnType
from laminar_polars.config import parse_duration
from laminar_polars.errors import ConfigError, PlanError, SchemaError

__all__ = [
    "ARITHMETIC",
    "COMPARISONS",
    "NUMERIC_FUNCTIONS",
    "STRING_FUNCTIONS",
    "cast_type",
    "int_literal",
    "interval_us",
    "is_string_literal",
    "literal_value",
    "node_text",
    "number_literal",
    "parse_date",
    "parse_timestamp",
    "sql_like",
    "temporal_literal",
]

def node_text(node: exp.Expr) -> str:
    """The SQL text of ``node``, for messages."""
    from laminar_polars.sql.dialect import Laminar

    text = node.sql(dialect=Laminar)
    return text if len(text) <= 80 else text[:77] + "..."


# -- constants ---------------------------------------------------------------------


def is_string_literal(node: exp.Expr) -> bool:
    return isinstance(node, exp.Literal) and node.is_string


def literal_value(node: exp.Expr) -> object:
    """The Python value of a literal, ``TRUE``/``FALSE`` or ``NULL``."""
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    assert isinstance(node, exp.Literal)
    if node.is_string:
        return node.this
    return number_literal(node)


def number_literal(node: exp.Literal) -> int | float:
    """The value of a numeric literal: an int if it reads as one, else a float.

    >>> from sqlglot import exp
    >>> number_literal(exp.Literal.number(3)), number_literal(exp.Literal.number("2.5"))
    (3, 2.5)
    """
    text = str(node.this)
    try:
        return int(text)
    except ValueError:
        return float(text)


def int_literal(node: exp.Expr | None, what: str) -> int:
    """An optional integer argument such as ROUND's digits (0 when absent)."""
    if node is None:
        return 0
    value = literal_value(node) if isinstance(node, exp.Literal) else None
    if isinstance(node, exp.Neg) and isinstance(node.this, exp.Literal):
        value = literal_value(node.this)
        value = -value if isinstance(value, int) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise PlanError(f"{what} must be an integer literal, got {node_text(node)}")
    return value


def parse_timestamp(text: str) -> dt.datetime:
    """ISO 8601 text → a naive datetime; one with a time zone is converted to UTC."""
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise PlanError(f"cannot read {text!r} as a TIMESTAMP") from None
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def parse_date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        raise PlanError(f"cannot read {text!r} as a DATE") from None


def temporal_literal(node: exp.Expr, dtype: pl.DataType | None) -> pl.Expr | None:
    """A string literal read as ``dtype`` if that is a TIMESTAMP or DATE, else None."""
    if isinstance(dtype, pl.Datetime):
        return pl.lit(parse_timestamp(node.name), dtype=pl.Datetime("us"))
    if isinstance(dtype, pl.Date):
        return pl.lit(parse_date(node.name), dtype=pl.Date())
    return None


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


# sqlglot type names that differ from the names ColumnType.from_sql knows.
_SQLGLOT_TYPES = {"FLOAT": "REAL", "TEXT": "TEXT", "DOUBLE": "DOUBLE"}


def cast_type(node: exp.Cast) -> pl.DataType:
    """The Polars type a CAST (or TRY_CAST) converts to."""
    to = node.args["to"]
    if to.this == exp.DType.USERDEFINED and to.args.get("kind") is not None:
        name = to.args["kind"].name
    else:
        name = to.this.name
    try:
        return ColumnType.from_sql(_SQLGLOT_TYPES.get(name, name)).polars
    except SchemaError as error:
        raise PlanError(f"unsupported type in {node_text(node)}: {error}") from None


# -- operators and functions -------------------------------------------------------


def _sql_remainder(a: pl.Expr, b: pl.Expr) -> pl.Expr:
    """SQL's ``%``: the remainder takes the dividend's sign (Polars' ``%`` the divisor's)."""
    floor = a % b
    return pl.when((floor != 0) & ((floor < 0) != (a < 0))).then(floor - b).otherwise(floor)


def sql_like(value: pl.Expr, pattern: str, ignore_case: bool) -> pl.Expr:
    """SQL LIKE: ``%`` any run, ``_`` one character; the whole string must match."""
    if not ignore_case and "_" not in pattern:
        parts = pattern.split("%")
        if len(parts) == 1:
            return value == pattern
        if len(parts) == 2 and not parts[1]:  # 'abc%'
            return value.str.starts_with(parts[0])
        if len(parts) == 2 and not parts[0]:  # '%abc'
            return value.str.ends_with(parts[1])
        if len(parts) == 3 and not parts[0] and not parts[2]:  # '%abc%'
            return value.str.contains(parts[1], literal=True)
    regex = "".join(
        ".*" if ch == "%" else "." if ch == "_" else re.escape(ch) for ch in pattern
    )
    return value.str.contains(f"(?s{'i' if ignore_case else ''})^{regex}$")


COMPARISONS: dict[type[exp.Expr], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    exp.EQ: lambda a, b: a == b,
    exp.NEQ: lambda a, b: a != b,
    exp.GT: lambda a, b: a > b,
    exp.GTE: lambda a, b: a >= b,
    exp.LT: lambda a, b: a < b,
    exp.LTE: lambda a, b: a <= b,
    exp.NullSafeEQ: lambda a, b: a.eq_missing(b),
    exp.NullSafeNEQ: lambda a, b: a.ne_missing(b),
}
ARITHMETIC: dict[type[exp.Expr], Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    exp.Add: lambda a, b: a + b,
    exp.Sub: lambda a, b: a - b,
    exp.Mul: lambda a, b: a * b,
    exp.Div: lambda a, b: a / b,
    exp.Mod: _sql_remainder,
}
STRING_FUNCTIONS: dict[type[exp.Expr], Callable[[pl.Expr], pl.Expr]] = {
    exp.Upper: lambda e: e.str.to_uppercase(),
    exp.Lower: lambda e: e.str.to_lowercase(),
    exp.Length: lambda e: e.str.len_chars(),
}
NUMERIC_FUNCTIONS: dict[type[exp.Expr], Callable[[pl.Expr], pl.Expr]] = {
    exp.Abs: lambda e: e.abs(),
    exp.Floor: lambda e: e.floor(),
    exp.Ceil: lambda e: e.ceil(),
}
