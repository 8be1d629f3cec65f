"""The element-wise functions of the Polars IR, rebuilt as public ``pl.Expr`` calls.

A ``Function`` node of the IR names its function by a key (``'abs'``,
``'StringFunction.Contains'``...) and carries the function's options as extra
data. Both are Polars internals of IR version 16, the version
`laminar_polars.frontend.polars_ir.read_plan` checks once for the whole front
end. The table is explicit on purpose: a key missing from it is refused by
`laminar_polars.frontend.ir_expressions`, never guessed at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import polars as pl

from laminar_polars.errors import PlanError

__all__ = ["ELEMENTWISE_FUNCTIONS", "NOT_LITERAL"]

# An element-wise function: (inputs as pl.Expr, extra data of the IR node,
# literal values of the inputs (NOT_LITERAL where not a literal)) -> pl.Expr.
_Fn = Callable[[list[pl.Expr], tuple[Any, ...], list[Any]], pl.Expr]


def _unary(method: str, namespace: str | None = None) -> _Fn:
    def build(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
        target: Any = args[0] if namespace is None else getattr(args[0], namespace)
        return getattr(target, method)()
    return build


def _binary_method(method: str, namespace: str | None = None) -> _Fn:
    def build(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
        target: Any = args[0] if namespace is None else getattr(args[0], namespace)
        return getattr(target, method)(*args[1:])
    return build


def _clip(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
    has_min, has_max = data
    rest = iter(args[1:])
    lower = next(rest) if has_min else None
    upper = next(rest) if has_max else None
    return args[0].clip(lower, upper)


def _is_in(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
    (nulls_equal,) = data
    values = lits[1]
    if values is NOT_LITERAL or not isinstance(values, list):
        raise PlanError("is_in against an expression (not a literal collection) "
                        "cannot be maintained")
    return args[0].is_in(values, nulls_equal=nulls_equal)


# A sentinel, not None: None is the value of a null literal.
NOT_LITERAL = object()


def _value_or_expr(args: list[pl.Expr], lits: list[Any], i: int) -> Any:
    """Argument ``i`` as its Python value when it is a literal (None for null)."""
    return args[i] if lits[i] is NOT_LITERAL else lits[i]


def _str_slice(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
    return args[0].str.slice(args[1], _value_or_expr(args, lits, 2))


def _str_strip(method: str) -> _Fn:
    def build(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
        return getattr(args[0].str, method)(_value_or_expr(args, lits, 1))
    return build


def _str_replace(args: list[pl.Expr], data: tuple[Any, ...], lits: list[Any]) -> pl.Expr:
    n, literal = data
    if n == -1:
        return args[0].str.replace_all(args[1], args[2], literal=literal)
    return args[0].str.replace(args[1], args[2], literal=literal, n=n)


ELEMENTWISE_FUNCTIONS: dict[str, _Fn] = {
    # numeric
    "abs": _unary("abs"),
    "negate": lambda a, d, lits: -a[0],
    "floor": _unary("floor"),
    "ceil": _unary("ceil"),
    "sqrt": _unary("sqrt"),
    "exp": _unary("exp"),
    "sign": _unary("sign"),
    "log": lambda a, d, lits: a[0].log(a[1]),
    "pow": lambda a, d, lits: a[0].pow(a[1]),
    "round": lambda a, d, lits: a[0].round(d[0], mode=d[1]),
    "round_sig_figs": lambda a, d, lits: a[0].round_sig_figs(d[0]),
    "clip": _clip,
    "fill_null": lambda a, d, lits: a[0].fill_null(a[1]),
    "coalesce": lambda a, d, lits: pl.coalesce(a),
    "max_horizontal": lambda a, d, lits: pl.max_horizontal(a),
    "min_horizontal": lambda a, d, lits: pl.min_horizontal(a),
    "sum_horizontal": lambda a, d, lits: pl.sum_horizontal(a, ignore_nulls=d[0]),
    # boolean
    "BooleanFunction.IsNull": _unary("is_null"),
    "BooleanFunction.IsNotNull": _unary("is_not_null"),
    "BooleanFunction.Not": _unary("not_"),
    "BooleanFunction.IsNan": _unary("is_nan"),
    "BooleanFunction.IsNotNan": _unary("is_not_nan"),
    "BooleanFunction.IsFinite": _unary("is_finite"),
    "BooleanFunction.IsInfinite": _unary("is_infinite"),
    "BooleanFunction.IsBetween": lambda a, d, lits: a[0].is_between(a[1], a[2], closed=d[0]),
    "BooleanFunction.IsIn": _is_in,
    "BooleanFunction.AnyHorizontal": lambda a, d, lits: pl.any_horizontal(a),
    "BooleanFunction.AllHorizontal": lambda a, d, lits: pl.all_horizontal(a),
    # strings
    "StringFunction.Contains": lambda a, d, lits: a[0].str.contains(a[1], literal=d[0],
                                                                   strict=d[1]),
    "StringFunction.StartsWith": _binary_method("starts_with", "str"),
    "StringFunction.EndsWith": _binary_method("ends_with", "str"),
    "StringFunction.Lowercase": _unary("to_lowercase", "str"),
    "StringFunction.Uppercase": _unary("to_uppercase", "str"),
    "StringFunction.LenChars": _unary("len_chars", "str"),
    "StringFunction.LenBytes": _unary("len_bytes", "str"),
    "StringFunction.Reverse": _unary("reverse", "str"),
    "StringFunction.Slice": _str_slice,
    "StringFunction.Head": _binary_method("head", "str"),
    "StringFunction.Tail": _binary_method("tail", "str"),
    "StringFunction.StripChars": _str_strip("strip_chars"),
    "StringFunction.StripCharsStart": _str_strip("strip_chars_start"),
    "StringFunction.StripCharsEnd": _str_strip("strip_chars_end"),
    "StringFunction.StripPrefix": _binary_method("strip_prefix", "str"),
    "StringFunction.StripSuffix": _binary_method("strip_suffix", "str"),
    "StringFunction.Replace": _str_replace,
    "StringFunction.ConcatHorizontal": lambda a, d, lits: pl.concat_str(
        a, separator=d[0], ignore_nulls=d[1]),
    "StringFunction.ZFill": _binary_method("zfill", "str"),
    "StringFunction.PadStart": lambda a, d, lits: a[0].str.pad_start(a[1], d[0]),
    "StringFunction.PadEnd": lambda a, d, lits: a[0].str.pad_end(a[1], d[0]),
    "StringFunction.CountMatches": lambda a, d, lits: a[0].str.count_matches(a[1],
                                                                            literal=d[0]),
    "StringFunction.Find": lambda a, d, lits: a[0].str.find(a[1], literal=d[0], strict=d[1]),
    "StringFunction.Extract": lambda a, d, lits: a[0].str.extract(a[1], d[0]),
    # temporal
    "TemporalFunction.Year": _unary("year", "dt"),
    "TemporalFunction.IsoYear": _unary("iso_year", "dt"),
    "TemporalFunction.Quarter": _unary("quarter", "dt"),
    "TemporalFunction.Month": _unary("month", "dt"),
    "TemporalFunction.Week": _unary("week", "dt"),
    "TemporalFunction.WeekDay": _unary("weekday", "dt"),
    "TemporalFunction.Day": _unary("day", "dt"),
    "TemporalFunction.OrdinalDay": _unary("ordinal_day", "dt"),
    "TemporalFunction.Hour": _unary("hour", "dt"),
    "TemporalFunction.Minute": _unary("minute", "dt"),
    "TemporalFunction.Second": _unary("second", "dt"),
    "TemporalFunction.Millisecond": _unary("millisecond", "dt"),
    "TemporalFunction.Microsecond": _unary("microsecond", "dt"),
    "TemporalFunction.Nanosecond": _unary("nanosecond", "dt"),
    "TemporalFunction.Date": _unary("date", "dt"),
    "TemporalFunction.Time": _unary("time", "dt"),
    "TemporalFunction.MonthStart": _unary("month_start", "dt"),
    "TemporalFunction.MonthEnd": _unary("month_end", "dt"),
    "TemporalFunction.TimeStamp": lambda a, d, lits: a[0].dt.timestamp(d[0]),
    "TemporalFunction.CastTimeUnit": lambda a, d, lits: a[0].dt.cast_time_unit(d[0]),
    "TemporalFunction.ToString": lambda a, d, lits: a[0].dt.to_string(d[0]),
    "TemporalFunction.Truncate": _binary_method("truncate", "dt"),
    "TemporalFunction.Round": _binary_method("round", "dt"),
    "TemporalFunction.OffsetBy": _binary_method("offset_by", "dt"),
    **{f"TemporalFunction.Total{unit}": (
        lambda method: lambda a, d, lits: getattr(a[0].dt, method)(fractional=bool(d[0])))(
            f"total_{unit.lower()}")
       for unit in ("Days", "Hours", "Minutes", "Seconds", "Milliseconds", "Microseconds",
                    "Nanoseconds")},
}
