"""Every access to Polars internals the front end makes: read a LazyFrame's plan.

This is the one module to revisit when Polars changes. It turns a LazyFrame into
a small, neutral tree (`SourceScan`, `Select`, `WithColumns`, `Filter`,
`GroupBy`) whose expressions (`IRExpr`) convert back into public ``pl.Expr``
objects on request. `laminar_polars.frontend.translate` maps that tree onto the
logical plan and never touches Polars internals.

Route: the IR visitor
----------------------
``LazyFrame._ldf.visit()`` returns Polars' ``NodeTraverser``, the interface
Polars keeps for its GPU engine (cudf-polars): it exposes the *resolved* plan
(selectors and wildcards expanded, ``rename``/``drop`` turned into projections,
literals and casts type-coerced, every node's schema known) with a version
number (`NodeTraverser.version`). The alternative, ``serialize(format="json")``,
shows the unresolved DSL: its JSON format is deprecated (Polars warns on use),
and its binary format is opaque. So:

* the plan is read **unoptimized** (`pl.QueryOptFlags.none`, which keeps type
  coercion): the user's steps stay in their order, and nothing (a predicate,
  a projection, a slice) is pushed into the placeholder scan;
* a source or view is a `register_io_source` scan (`PythonScan` in the IR)
  whose ``io_source`` is a `Placeholder` naming the relation, so the IR leads
  back to it by identity, and ``collect_schema()`` on it is the real schema;
* IR expressions are converted back into ``pl.Expr`` through an explicit table
  of element-wise functions. Anything outside the table (cumulative or window
  functions, sorting, Python UDFs, ...) is refused with `PlanError` naming
  it, never guessed at. Being type-resolved, the rebuilt expressions are
  explicit: a literal carries the dtype Polars coerced it to.

Examples
--------
>>> import polars as pl
>>> frame = placeholder("trades", pl.Schema({"price": pl.Float64, "qty": pl.Int64}))
>>> frame.collect_schema()
Schema([('price', Float64), ('qty', Int64)])
>>> tree = read_plan(frame.filter(pl.col("qty") > 1).select("price"))
>>> type(tree).__name__, type(tree.input).__name__, type(tree.input.input).__name__
('Select', 'Filter', 'SourceScan')
>>> print(tree.input.predicate.to_polars(named=False))
[(col("qty")) > (1)]
>>> tree.input.input.name
'trades'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from laminar_polars.errors import PlanError

__all__ = [
    "AggCall",
    "Duration",
    "DynamicOptions",
    "Filter",
    "GroupBy",
    "IRExpr",
    "IRNode",
    "Placeholder",
    "Select",
    "SourceScan",
    "WithColumns",
    "placeholder",
    "read_plan",
]


# -- placeholders ------------------------------------------------------------------

class Placeholder:
    """The ``io_source`` of a ``db.stream(name)`` frame: names the relation.

    Collecting the frame yields no rows (the real rows live in the engine).
    """

    def __init__(self, name: str, schema: pl.Schema):
        self.name = name
        self.schema = schema

    def __call__(self, with_columns: list[str] | None, predicate: Any, n_rows: int | None,
                 batch_size: int | None) -> Iterator[pl.DataFrame]:
        frame = pl.DataFrame(schema=self.schema)
        yield frame.select(with_columns) if with_columns is not None else frame

    def __repr__(self) -> str:
        return f"Placeholder({self.name!r})"


def placeholder(name: str, schema: pl.Schema) -> pl.LazyFrame:
    """A LazyFrame standing for relation ``name``, with its schema."""
    return register_io_source(Placeholder(name, pl.Schema(schema)), schema=pl.Schema(schema),
                              explain_name=name)


# -- the neutral tree -------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class AggCall:
    """One aggregate found in an aggregation expression.

    ``func`` is one of ``count_star``, ``count``, ``sum``, ``min``, ``max``,
    ``mean``, ``first``, ``last``, ``n_unique``; ``arg`` its element-wise input
    (None for ``count_star``).
    """

    func: str
    arg: pl.Expr | None


OnAgg = Callable[[AggCall], pl.Expr]


@dataclasses.dataclass(frozen=True)
class SourceScan:
    """A scan of a `Placeholder`: relation ``name`` as seen when the frame was built."""

    name: str
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class Select:
    input: IRNode
    exprs: tuple[IRExpr, ...]
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class WithColumns:
    input: IRNode
    exprs: tuple[IRExpr, ...]
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class Filter:
    input: IRNode
    predicate: IRExpr
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class Duration:
    """A Polars duration: calendar months, then fixed weeks, days, nanoseconds."""

    months: int
    weeks: int
    days: int
    nanoseconds: int
    negative: bool
    integer: bool  # an integer-index duration ("3i")

    @property
    def fixed_ns(self) -> int | None:
        """The length in nanoseconds, None if it has calendar months."""
        if self.months:
            return None
        total = (self.weeks * 7 + self.days) * 86_400_000_000_000 + self.nanoseconds
        return -total if self.negative else total


@dataclasses.dataclass(frozen=True)
class DynamicOptions:
    """``group_by_dynamic`` options, in the words of the Python API."""

    index_column: str
    every: Duration
    period: Duration
    offset: Duration
    closed: str       # 'left' | 'right' | 'both' | 'none'
    label: str        # 'left' | 'right' | 'datapoint'
    include_boundaries: bool
    start_by: str     # 'window' | 'datapoint' | 'monday' | ...


@dataclasses.dataclass(frozen=True)
class GroupBy:
    """``group_by(keys).agg(aggs)``, or ``group_by_dynamic`` when ``dynamic`` is set."""

    input: IRNode
    keys: tuple[IRExpr, ...]
    aggs: tuple[IRExpr, ...]
    dynamic: DynamicOptions | None
    schema: pl.Schema


IRNode = SourceScan | Select | WithColumns | Filter | GroupBy


class IRExpr:
    """A named expression of the IR; `to_polars` rebuilds it as a ``pl.Expr``."""

    def __init__(self, reader: _Reader, node: int, name: str):
        self._reader = reader
        self._node = node
        self.name = name

    @property
    def column(self) -> str | None:
        """The column it reads, if it is a bare column reference."""
        expr = self._reader.view(self._node)
        return expr.name if type(expr).__name__ == "Column" else None

    def to_polars(self, on_agg: OnAgg | None = None, *, named: bool = True) -> pl.Expr:
        """The expression, aliased to its output name (unless ``named`` is False).

        Without ``on_agg`` the expression must be element-wise. With it (an
        aggregation context), each aggregate is handed to ``on_agg`` and
        replaced by the expression it returns; a column outside any aggregate
        is refused, as Polars would make it a list.
        """
        expr = _ExprBuilder(self._reader, on_agg).build(self._node)
        if not named or (expr.meta.is_column() and expr.meta.output_name() == self.name):
            return expr
        return expr.alias(self.name)

    def __repr__(self) -> str:
        return f"IRExpr({self.name!r})"


class _ColumnRef(IRExpr):
    """A bare column reference made up by the reader (no IR node behind it)."""

    def __init__(self, name: str):
        self.name = name

    @property
    def column(self) -> str | None:
        return self.name

    def to_polars(self, on_agg: OnAgg | None = None, *, named: bool = True) -> pl.Expr:
        if on_agg is not None:
            raise PlanError(f"column {self.name!r} is used outside an aggregation")
        return pl.col(self.name)


# -- reading the plan ------------------------------------------------------------

_VISITOR_MAJOR = 16  # NodeTraverser.version() this module was written against

_REFUSED_NODES = {
    "Sort": "sort",
    "Join": "join",
    "Distinct": "unique",
    "Slice": "head/tail/slice/limit",
    "Cache": "cache",
    "Union": "concat",
    "HConcat": "concat(how='horizontal')",
    "MergeSorted": "merge_sorted",
    "Reduce": "a whole-frame aggregation (select of aggregates)",
    "Sink": "sink",
    "Scan": "a file scan (only db.stream() frames can feed a view)",
    "DataFrameScan": "a DataFrame scan (only db.stream() frames can feed a view)",
}


def read_plan(frame: pl.LazyFrame) -> IRNode:
    """The unoptimized, resolved plan of ``frame`` as a neutral tree.

    Raises `PlanError` naming the first step that has no neutral form.
    """
    flags = pl.QueryOptFlags.none()
    try:
        traverser = frame._ldf.with_optimizations(flags._pyoptflags).visit()
    except pl.exceptions.PolarsError as exc:
        raise PlanError(f"Polars could not resolve the plan: {exc}") from exc
    major = traverser.version()[0]
    if major != _VISITOR_MAJOR:  # pragma: no cover - depends on the installed Polars
        raise PlanError(f"unsupported Polars IR version {traverser.version()} "
                        f"(laminar_polars reads version {_VISITOR_MAJOR}.x)")
    return _Reader(traverser).node(traverser.get_node())


class _Reader:
    def __init__(self, traverser: Any):
        self.traverser = traverser

    def view(self, node: int) -> Any:
        try:
            return self.traverser.view_expression(node)
        except NotImplementedError as exc:
            raise PlanError(f"a Python function in an expression ({exc}: map_elements, "
                            "map_batches or a plugin) cannot be maintained") from exc

    def node(self, node: int) -> IRNode:
        t = self.traverser
        t.set_node(node)
        try:
            ir = t.view_current_node()
        except NotImplementedError as exc:
            raise PlanError(f"a Python function over the frame ({exc}: map_batches, "
                            "map_groups) cannot be maintained") from exc
        schema = pl.Schema(t.get_schema())
        kind = type(ir).__name__
        if kind == "PythonScan":
            source = getattr(ir.options[0], "io_source", None)
            if not isinstance(source, Placeholder):
                raise PlanError("a Python scan that is not db.stream(): a view can only read "
                                "sources and views through db.stream(name)")
            return SourceScan(source.name, source.schema)
        if kind == "Select":
            return Select(self.node(ir.input), self._named(ir.expr), schema)
        if kind == "SimpleProjection":  # pragma: no cover - only made by optimizations
            columns = tuple(_ColumnRef(name) for name in schema)
            return Select(self.node(ir.input), columns, schema)
        if kind == "HStack":
            return WithColumns(self.node(ir.input), self._named(ir.exprs), schema)
        if kind == "Filter":
            predicate = IRExpr(self, ir.predicate.node, ir.predicate.output_name)
            return Filter(self.node(ir.input), predicate, schema)
        if kind == "GroupBy":
            return self._group_by(ir, schema)
        if kind == "MapFunction":
            raise PlanError(f"{_map_function_name(ir.function)} cannot be maintained "
                            "incrementally by a materialized view")
        what = _REFUSED_NODES.get(kind, kind)
        raise PlanError(f"{what} cannot be maintained incrementally by a materialized view")

    def _named(self, exprs: list[Any]) -> tuple[IRExpr, ...]:
        return tuple(IRExpr(self, e.node, e.output_name) for e in exprs)

    def _group_by(self, ir: Any, schema: pl.Schema) -> GroupBy:
        options = ir.options
        if ir.apply:  # pragma: no cover - view_current_node refuses it first
            raise PlanError("group_by(...).map_groups cannot be maintained")
        if options.rolling is not None:
            raise PlanError("rolling (a window per row) cannot be maintained by a "
                            "materialized view; use group_by_dynamic")
        if options.slice is not None:
            raise PlanError("a slice of the group_by result cannot be maintained")
        dynamic = None
        if options.dynamic is not None:
            d = options.dynamic
            dynamic = DynamicOptions(
                index_column=d.index_column, every=_duration(d.every),
                period=_duration(d.period), offset=_duration(d.offset),
                closed=d.closed_window, label=_API_SPELLING.get(d.label, d.label),
                include_boundaries=bool(d.include_boundaries),
                start_by=_API_SPELLING.get(d.start_by, d.start_by))
        keys = self._named(ir.keys)
        aggs = self._named(ir.aggs)
        return GroupBy(self.node(ir.input), keys, aggs, dynamic, schema)


_API_SPELLING = {"window_bound": "window", "data_point": "datapoint"}


def _duration(raw: tuple[int, int, int, int, bool, bool]) -> Duration:
    months, weeks, days, nanoseconds, integer, negative = raw
    return Duration(months, weeks, days, nanoseconds, bool(negative), bool(integer))


def _map_function_name(function: Any) -> str:
    name = function[0] if isinstance(function, tuple) and function else str(function)
    return {"row_index": "with_row_index", "explode": "explode (or group_by().head/tail)",
            "unpivot": "unpivot", "unnest": "unnest", "rename": "rename"}.get(name, str(name))


# -- expressions -----------------------------------------------------------------

_BINARY: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "Eq": lambda a, b: a == b,
    "EqValidity": lambda a, b: a.eq_missing(b),
    "NotEq": lambda a, b: a != b,
    "NotEqValidity": lambda a, b: a.ne_missing(b),
    "Lt": lambda a, b: a < b,
    "LtEq": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "GtEq": lambda a, b: a >= b,
    "Plus": lambda a, b: a + b,
    "Minus": lambda a, b: a - b,
    "Multiply": lambda a, b: a * b,
    "TrueDivide": lambda a, b: a / b,
    "FloorDivide": lambda a, b: a // b,
    "Modulus": lambda a, b: a % b,
    "And": lambda a, b: a & b,
    "Or": lambda a, b: a | b,
    "Xor": lambda a, b: a ^ b,
    "LogicalAnd": lambda a, b: a & b,
    "LogicalOr": lambda a, b: a | b,
}

# An element-wise function: (inputs as pl.Expr, extra data of the IR node,
# literal values of the inputs (None where not a literal)) -> pl.Expr.
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
    if values is _NOT_LITERAL or not isinstance(values, list):
        raise PlanError("is_in against an expression (not a literal collection) "
                        "cannot be maintained")
    return args[0].is_in(values, nulls_equal=nulls_equal)


_NOT_LITERAL = object()


def _value_or_expr(args: list[pl.Expr], lits: list[Any], i: int) -> Any:
    """Argument ``i`` as its Python value when it is a literal (None for null)."""
    return args[i] if lits[i] is _NOT_LITERAL else lits[i]


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


_FUNCTIONS: dict[str, _Fn] = {
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

# IR aggregate name (and options) -> our aggregate vocabulary.
_AGGS = {"sum": "sum", "mean": "mean", "first": "first", "last": "last",
         "n_unique": "n_unique", "min": "min", "max": "max"}
_AGG_NAMES = {"first_non_null": "first(ignore_nulls=True)",
              "last_non_null": "last(ignore_nulls=True)",
              "implode": "a column left unaggregated (Polars would implode it into a list)",
              "std": "std", "var": "var", "median": "median", "quantile": "quantile",
              "agg_groups": "agg_groups"}
_POLARS_AGGREGATES = {"quantile", "null_count", "arg_max", "arg_min", "product", "mode",
                      "bitwise_and", "bitwise_or", "bitwise_xor", "entropy", "kurtosis",
                      "skew", "approx_n_unique", "unique", "drop_nulls", "drop_nans"}


class _ExprBuilder:
    def __init__(self, reader: _Reader, on_agg: OnAgg | None):
        self.reader = reader
        self.on_agg = on_agg
        self.in_agg = False  # building the input of an aggregate

    @property
    def aggregating(self) -> bool:
        return self.on_agg is not None and not self.in_agg

    def build(self, node: int) -> pl.Expr:
        e = self.reader.view(node)
        kind = type(e).__name__
        if kind == "Column":
            if self.aggregating:
                raise PlanError(f"column {e.name!r} is used outside an aggregation: "
                                "Polars would implode it into a list")
            return pl.col(e.name)
        if kind == "Literal":
            return _literal(e.value, e.dtype)
        if kind == "Alias":
            return self.build(e.expr).alias(e.name)
        if kind == "BinaryExpr":
            op = str(e.op).rsplit(".", 1)[-1]
            if op not in _BINARY:
                raise PlanError(f"operator {op} is not supported in a materialized view")
            return _BINARY[op](self.build(e.left), self.build(e.right))
        if kind == "Cast":
            strict, wrap = {0: (True, False), 1: (False, False), 2: (False, True)}[e.options]
            return self.build(e.expr).cast(e.dtype, strict=strict, wrap_numerical=wrap)
        if kind == "Ternary":
            return (pl.when(self.build(e.predicate)).then(self.build(e.truthy))
                    .otherwise(self.build(e.falsy)))
        if kind == "Len":
            return self._aggregate("count_star", None, "len")
        if kind == "Agg":
            return self._agg(e)
        if kind == "Function":
            return self._function(e)
        if kind == "Window":
            raise PlanError(".over(...) (a window expression) cannot be maintained "
                            "incrementally by a materialized view")
        what = {"Sort": "sort", "SortBy": "sort_by", "Gather": "gather/get",
                "Filter": "filter inside an expression", "Slice": "slice/head/tail",
                "Explode": "explode", "Rolling": "rolling expressions"}.get(kind, kind)
        raise PlanError(f"{what} is not supported in a materialized view expression")

    def _aggregate(self, func: str, arg: int | None, polars_name: str) -> pl.Expr:
        if self.on_agg is None:
            raise PlanError(f"aggregation {polars_name}() in a row-wise step (select, "
                            "with_columns or filter) cannot be maintained; aggregate with "
                            "group_by or group_by_dynamic")
        if self.in_agg:
            raise PlanError(f"nested aggregation {polars_name}() is not supported")
        arg_expr = None
        if arg is not None:
            self.in_agg = True
            try:
                arg_expr = self.build(arg)
            finally:
                self.in_agg = False
            if not arg_expr.meta.root_names():
                raise PlanError(f"{polars_name}() of an expression that reads no column "
                                "is not supported")
        return self.on_agg(AggCall(func, arg_expr))

    def _agg(self, e: Any) -> pl.Expr:
        name, options = e.name, e.options
        (arg,) = e.arguments
        if name == "count":
            # options: include nulls (Expr.len) or not (Expr.count)
            return self._aggregate("count_star" if options else "count",
                                   None if options else arg, "len" if options else "count")
        if name in ("min", "max") and options:
            name = f"nan_{name}"
        if name not in _AGGS:
            raise PlanError(f"aggregation {_AGG_NAMES.get(name, name)} is not supported; "
                            "supported: len, count, sum, min, max, mean, first, last, n_unique")
        return self._aggregate(_AGGS[name], arg, name)

    def _function(self, e: Any) -> pl.Expr:
        data = tuple(e.function_data)
        head = data[0]
        key = head if isinstance(head, str) else str(head)
        fn = _FUNCTIONS.get(key)
        if fn is None:
            label = _api_name(key)
            if self.aggregating and key in _POLARS_AGGREGATES:
                raise PlanError(f"aggregation {label} is not supported; supported: len, "
                                "count, sum, min, max, mean, first, last, n_unique")
            raise PlanError(f"function {label} is not supported in a materialized view "
                            "(only element-wise functions are)")
        args = [self.build(i) for i in e.input]
        lits = [self._literal_value(i) for i in e.input]
        return fn(args, data[1:], lits)

    def _literal_value(self, node: int) -> Any:
        e = self.reader.view(node)
        return e.value if type(e).__name__ == "Literal" else _NOT_LITERAL


_NAMESPACES = {"BooleanFunction": "", "StringFunction": "str.", "TemporalFunction": "dt.",
               "ListFunction": "list.", "ArrayFunction": "arr.", "StructFunction": "struct.",
               "RollingFunction": "rolling_", "EwmFunction": "ewm_"}


def _api_name(key: str) -> str:
    """``'StringFunction.ToInteger'`` -> ``'str.to_integer'``; plain names unchanged."""
    if "." not in key:
        return key
    namespace, name = key.split(".", 1)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return _NAMESPACES.get(namespace, namespace + ".") + snake


def _literal(value: Any, dtype: pl.DataType) -> pl.Expr:
    if type(value).__name__ == "PySeries":
        raise PlanError("a Series literal cannot be used in a materialized view")
    if dtype == pl.Null:
        return pl.lit(None)
    if isinstance(dtype, pl.List):
        return pl.lit(pl.Series([value], dtype=dtype))
    return pl.lit(value, dtype=dtype)
