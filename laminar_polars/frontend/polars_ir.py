"""Read a LazyFrame's plan from Polars internals into a neutral tree.

With the two modules it delegates expressions to (`ir_expressions`, which
rebuilds an IR expression as a ``pl.Expr``, and `ir_functions`, its table of
element-wise functions), this is all the front end reads of Polars internals:
the modules to revisit when Polars changes. The IR version is checked once,
here, in `read_plan`. It turns a LazyFrame into a small, neutral tree
(`SourceScan`, `Select`, `WithColumns`, `Filter`, `GroupBy`, `Join`,
`JoinWhere`, `Concat`, `StaticFrame`) whose expressions (`IRExpr`) convert
back into public ``pl.Expr`` objects on request.
`laminar_polars.frontend.translate` maps that tree onto the logical plan and
never touches Polars internals.

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
* a join's options are read from the IR's tuples; ``join_where`` is, unoptimized,
  a filter over a cross join, read as one `JoinWhere` whose predicate is split
  at its ANDs, each part with its `Comparison` form when it compares sums of
  columns and duration literals (``ts_right >= ts - 1s``);
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
from collections.abc import Iterator
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from laminar_polars.errors import PlanError
from laminar_polars.frontend.ir_expressions import AggCall, ColumnRef, IRExpr, OnAgg

# AggCall, IRExpr and OnAgg are re-exported: with the node classes they are the
# whole vocabulary `translate` reads a plan in, so it needs this one module.
__all__ = [
    "AggCall",
    "AsofOptions",
    "Comparison",
    "Concat",
    "Conjunct",
    "Duration",
    "DynamicOptions",
    "Filter",
    "GroupBy",
    "IRExpr",
    "IRNode",
    "Join",
    "JoinWhere",
    "Linear",
    "OnAgg",
    "Placeholder",
    "Select",
    "SourceScan",
    "StaticFrame",
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


@dataclasses.dataclass(frozen=True)
class AsofOptions:
    """``join_asof`` options, in the words of the Python API (``tolerance``
    in units of the ``on`` column, None if not set)."""

    strategy: str
    tolerance: int | float | None
    left_by: tuple[str, ...]
    right_by: tuple[str, ...]
    allow_exact_matches: bool


@dataclasses.dataclass(frozen=True)
class Join:
    """``left.join(right, ...)`` (``how`` as the Python API spells it:
    'inner', 'left', 'right', 'full', 'semi', 'anti', 'cross'), or
    ``join_asof`` when ``asof`` is set (``how`` is then 'asof')."""

    left: IRNode
    right: IRNode
    how: str
    left_on: tuple[IRExpr, ...]
    right_on: tuple[IRExpr, ...]
    suffix: str
    coalesce: bool
    nulls_equal: bool
    asof: AsofOptions | None
    schema: pl.Schema


# A sum of columns (each with a coefficient) and a constant in microseconds.
Linear = tuple[tuple[tuple[str, int], ...], int]


@dataclasses.dataclass(frozen=True)
class Comparison:
    """``left op right`` (op one of ``= >= > <= <``) of two `Linear` sums."""

    op: str
    left: Linear
    right: Linear


@dataclasses.dataclass(frozen=True)
class Conjunct:
    """One AND-ed part of a predicate; ``comparison`` is its linear form, if any."""

    expr: IRExpr
    comparison: Comparison | None


@dataclasses.dataclass(frozen=True)
class JoinWhere:
    """``left.join_where(right, *predicates, suffix=...)`` (or a filter over a
    cross join): the predicates' AND-ed parts, over the output's columns."""

    left: IRNode
    right: IRNode
    suffix: str
    conjuncts: tuple[Conjunct, ...]
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class Concat:
    """``pl.concat`` of frames with the same columns."""

    inputs: tuple[IRNode, ...]
    schema: pl.Schema


@dataclasses.dataclass(frozen=True)
class StaticFrame:
    """A DataFrame fixed in the plan (``df.lazy()``)."""

    frame: pl.DataFrame
    schema: pl.Schema


IRNode = (SourceScan | Select | WithColumns | Filter | GroupBy | Join | JoinWhere | Concat
          | StaticFrame)


# -- reading the plan ------------------------------------------------------------

_VISITOR_MAJOR = 16  # the NodeTraverser.version() this module and its two helpers read

_REFUSED_NODES = {
    "Sort": "sort",
    "Distinct": "unique",
    "Slice": "head/tail/slice/limit",
    "Cache": "cache",
    "HConcat": "concat(how='horizontal')",
    "MergeSorted": "merge_sorted",
    "Reduce": "a whole-frame aggregation (select of aggregates)",
    "Sink": "sink",
    "Scan": "a file scan (only db.stream() frames can feed a view)",
}

_JOIN_HOW = {"Inner": "inner", "Left": "left", "Right": "right", "Full": "full",
             "Semi": "semi", "Anti": "anti", "Cross": "cross"}
_COMPARE = {"Eq": "=", "GtEq": ">=", "Gt": ">", "LtEq": "<=", "Lt": "<"}
_MICROS = {"ns": (1, 1000), "us": (1, 1), "ms": (1000, 1)}  # (multiply, divide) to microseconds


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
            columns = tuple(ColumnRef(name) for name in schema)
            return Select(self.node(ir.input), columns, schema)
        if kind == "HStack":
            return WithColumns(self.node(ir.input), self._named(ir.exprs), schema)
        if kind == "Filter":
            if self._is_cross_join(ir.input):
                return self._join_where(ir, schema)
            t.set_node(node)
            predicate = IRExpr(self, ir.predicate.node, ir.predicate.output_name)
            return Filter(self.node(ir.input), predicate, schema)
        if kind == "Join":
            return self._join(ir, schema)
        if kind == "Union":
            if ir.slice is not None:  # pragma: no cover - pl.concat makes no slice
                raise PlanError("a slice of a concat cannot be maintained")
            return Concat(tuple(self.node(i) for i in ir.inputs), schema)
        if kind == "DataFrameScan":
            frame = pl.DataFrame._from_pydf(ir.df)
            if ir.projection is not None or ir.selection is not None:  # pragma: no cover
                frame = frame.select(list(schema))
            return StaticFrame(frame, schema)
        if kind == "GroupBy":
            return self._group_by(ir, schema)
        if kind == "MapFunction":
            raise PlanError(f"{_map_function_name(ir.function)} cannot be maintained "
                            "incrementally by a materialized view")
        what = _REFUSED_NODES.get(kind, kind)
        raise PlanError(f"{what} cannot be maintained incrementally by a materialized view")

    def _named(self, exprs: list[Any]) -> tuple[IRExpr, ...]:
        return tuple(IRExpr(self, e.node, e.output_name) for e in exprs)

    # -- joins ---------------------------------------------------------------------
    def _is_cross_join(self, node: int) -> bool:
        t = self.traverser
        t.set_node(node)
        ir = t.view_current_node()
        return type(ir).__name__ == "Join" and ir.options[0] == "Cross"

    def _join(self, ir: Any, schema: pl.Schema) -> Join:
        kind, nulls_equal, slice_, suffix, coalesce, _order = ir.options
        if slice_ is not None:  # pragma: no cover - made by optimizations only
            raise PlanError("a slice of a join cannot be maintained")
        asof = None
        if isinstance(kind, tuple):  # ('AsOf', strategy, tolerance, its text, by...)
            _, strategy, tolerance, _text, left_by, right_by, exact, _checked = kind
            asof = AsofOptions(str(strategy), tolerance, tuple(left_by or ()),
                               tuple(right_by or ()), bool(exact))
            how = "asof"
        else:
            how = _JOIN_HOW.get(str(kind), str(kind).lower())
        left_on, right_on = self._named(ir.left_on), self._named(ir.right_on)
        return Join(self.node(ir.input_left), self.node(ir.input_right), how, left_on, right_on,
                    str(suffix), bool(coalesce), bool(nulls_equal), asof, schema)

    def _join_where(self, ir: Any, schema: pl.Schema) -> JoinWhere:
        cross = ir.input
        conjuncts = tuple(Conjunct(IRExpr(self, part, ""), self._comparison(part))
                          for part in self._conjuncts(ir.predicate.node))
        t = self.traverser
        t.set_node(cross)
        join = t.view_current_node()
        suffix = str(join.options[3])
        return JoinWhere(self.node(join.input_left), self.node(join.input_right), suffix,
                         conjuncts, schema)

    def _conjuncts(self, node: int) -> list[int]:
        e = self.view(node)
        if type(e).__name__ == "BinaryExpr" and _op(e) in ("And", "LogicalAnd"):
            return self._conjuncts(e.left) + self._conjuncts(e.right)
        return [node]

    def _comparison(self, node: int) -> Comparison | None:
        e = self.view(node)
        if type(e).__name__ != "BinaryExpr" or _op(e) not in _COMPARE:
            return None
        left, right = self._linear(e.left), self._linear(e.right)
        if left is None or right is None:
            return None
        return Comparison(_COMPARE[_op(e)], left, right)

    def _linear(self, node: int) -> Linear | None:
        e = self.view(node)
        kind = type(e).__name__
        if kind == "Column":
            return ((e.name, 1),), 0
        if kind == "Literal" and isinstance(e.dtype, pl.Duration) and isinstance(e.value, int):
            multiply, divide = _MICROS.get(e.dtype.time_unit or "us", (1, 1))
            if e.value * multiply % divide:
                return None
            return (), e.value * multiply // divide
        if kind == "BinaryExpr" and _op(e) in ("Plus", "Minus"):
            a, b = self._linear(e.left), self._linear(e.right)
            if a is None or b is None:
                return None
            sign = 1 if _op(e) == "Plus" else -1
            terms = dict(a[0])
            for column, coefficient in b[0]:
                terms[column] = terms.get(column, 0) + sign * coefficient
            return tuple(terms.items()), a[1] + sign * b[1]
        return None

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


def _op(e: Any) -> str:
    return str(e.op).rsplit(".", 1)[-1]


def _duration(raw: tuple[int, int, int, int, bool, bool]) -> Duration:
    months, weeks, days, nanoseconds, integer, negative = raw
    return Duration(months, weeks, days, nanoseconds, bool(negative), bool(integer))


def _map_function_name(function: Any) -> str:
    name = function[0] if isinstance(function, tuple) and function else str(function)
    return {"row_index": "with_row_index", "explode": "explode (or group_by().head/tail)",
            "unpivot": "unpivot", "unnest": "unnest", "rename": "rename"}.get(name, str(name))
