"""An aggregating SELECT → `KeyedAgg`, or `WindowAgg` with a window in GROUP BY.

`Aggregation` reads GROUP BY (columns, expression keys, at most one ``tumble``,
``hop`` or ``session`` window), turns each aggregate of the select list and
HAVING into one hidden `Agg` column, and checks that every other column read is
a key. The rules it follows are in `laminar_polars.sql.select`, whose
`plan_select` hands it every SELECT that aggregates (and checks the finished
plan with `laminar_polars.plan.validate`: emit modes, event time, updating inputs).
"""

from __future__ import annotations

import dataclasses

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import (
    AGGREGATES,
    WINDOW_END,
    WINDOW_START,
    Agg,
    AggFunc,
    KeyedAgg,
    Node,
    Step,
    WindowAgg,
    WindowKind,
    WindowSpec,
    emit_mode,
)
from laminar_polars.sql.expressions import Translator, function_name
from laminar_polars.sql.polars_sql import is_aggregate
from laminar_polars.sql.row_wise import add_row_steps, condition, output_columns, output_names
from laminar_polars.sql.semantics import interval_us, node_text

__all__ = ["Aggregation"]

_WINDOW_ARITY: dict[WindowKind, tuple[int, int]] = {
    "tumble": (2, 3), "hop": (3, 4), "session": (2, 2)}
# The names of each window function's arguments after the time column.
_WINDOW_ARGS = {"tumble": ("size", "offset"), "hop": ("slide", "size", "offset"),
                "session": ("gap",)}
_WINDOW_USAGE = {"tumble": "tumble(ts, size [, offset])",
                 "hop": "hop(ts, slide, size [, offset])", "session": "session(ts, gap)"}
# Aggregates by their SQL name (the registry's); count(*), count(x) and
# count(DISTINCT x) share the name count and are told apart by their argument.
_BY_SQL_NAME: dict[str, AggFunc] = {f.sql_name: f.name for f in AGGREGATES.values()
                                     if f.takes_input and not f.distinct}
_SUPPORTED = ", ".join(dict.fromkeys(f.sql_name for f in AGGREGATES.values()))


def _normal(node: exp.Expr) -> str:
    """``node``'s text without table qualifiers or outer parentheses, to match keys."""
    while isinstance(node, exp.Paren):
        node = node.this
    node = node.copy()
    for column in node.find_all(exp.Column):
        column.set("table", None)
    return node.sql()


@dataclasses.dataclass(frozen=True)
class _Window:
    kind: WindowKind
    end: bool
    column: str
    spec: WindowSpec


def _window_call(node: exp.Expr, scope: Translator) -> _Window | None:
    if not isinstance(node, exp.Anonymous):
        return None
    name = function_name(node)
    prefix, _, suffix = name.partition("_")
    kind = next((k for k in _WINDOW_ARITY if k == prefix), None)
    if kind is None or suffix not in ("", "end"):
        return None
    args = node.expressions
    low, high = _WINDOW_ARITY[kind]
    if not low <= len(args) <= high or not isinstance(args[0], exp.Column):
        raise PlanError(f"{name}: expected {_WINDOW_USAGE[kind].replace(kind, name, 1)}, "
                        f"got {node_text(node)}")
    lengths = dict(zip(_WINDOW_ARGS[kind], args[1:], strict=False))
    micros = {what: _length(node, what, arg) for what, arg in lengths.items()}
    size = micros["gap" if kind == "session" else "size"]
    slide = micros.get("slide", size)
    if slide > size:
        # Legal (rows between windows belong to none), but in SQL almost always
        # the arguments swapped; Polars' every/period (LazyFrames) stays accepted.
        slide_text, size_text = node_text(lengths["slide"]), node_text(lengths["size"])
        raise PlanError(
            f"{node_text(node)}: hop takes the slide first, then the size: "
            f"hop(ts, slide, size), and the slide must not exceed the size; here the slide "
            f"{slide_text} is longer than the size {size_text}, so rows between windows "
            f"would belong to none. Did you mean hop(ts, {size_text}, {slide_text})?"
        )
    spec = WindowSpec(kind, size, slide, micros.get("offset", 0))
    return _Window(kind, suffix == "end", scope.column_name(args[0]), spec)


def _length(call: exp.Expr, what: str, arg: exp.Expr) -> int:
    """A window argument in microseconds; a size, slide or gap must be positive."""
    if what == "offset":
        return interval_us(arg)
    negative = isinstance(arg, exp.Neg) or (
        isinstance(arg, exp.Interval) and arg.this.name.strip().startswith("-"))
    if negative or interval_us(arg) <= 0:
        raise PlanError(f"{node_text(call)}: the window's {what} must be positive, "
                        f"got {node_text(arg)}")
    return interval_us(arg)


class Aggregation:
    """Plans one aggregating SELECT: GROUP BY keys, the window, aggregates, outputs."""

    def __init__(self, query: exp.Select, source: Node, scope: Translator,
                 steps: list[Step], items: list[tuple[exp.Expr, str | None]],
                 label: str) -> None:
        self.query, self.source, self.scope, self.items, self.label = (
            query, source, scope, items, label)
        self.steps = steps
        self.keys: list[str] = []
        self.key_exprs: dict[str, str] = {}  # normalized SQL → internal key column
        self.window: _Window | None = None
        self.aggs: list[Agg] = []
        self.args = Translator(source.schema, scope.qualifiers, clause="an aggregate's argument")
        self.filters = Translator(source.schema, scope.qualifiers, clause="an aggregate's FILTER")
        self._group_by()
        self.input = add_row_steps(source, self.steps)

    def _group_by(self) -> None:
        group = self.query.args.get("group")
        if group is None:
            return
        for key in ("grouping_sets", "cube", "rollup", "totals", "all"):
            if group.args.get(key):
                raise PlanError(f"GROUP BY {key.upper().replace('_', ' ')} is not supported")
        with_columns: list[pl.Expr] = []
        self.scope.clause = "GROUP BY"
        for item in group.expressions:
            node = self._resolve_group_item(item)
            window = _window_call(node, self.scope)
            if window is not None:
                if window.end:
                    raise PlanError(f"GROUP BY takes the window's start function "
                                    f"{window.kind}(...), not {node_text(node)}")
                if self.window is not None:
                    raise PlanError("GROUP BY takes at most one window (tumble, hop or session)")
                self.window = window
            elif isinstance(node, (exp.Rollup, exp.Cube, exp.GroupingSets)):
                raise PlanError(f"GROUP BY {node.key.upper()} is not supported")
            elif any(is_aggregate(n) for n in node.walk()):
                raise PlanError(f"aggregate functions are not allowed in GROUP BY: "
                                f"{node_text(node)}")
            elif isinstance(node, exp.Column):
                name = self.scope.column_name(node)
                if name not in self.keys:
                    self.keys.append(name)
            elif _normal(node) not in self.key_exprs:
                name = f"__key{len(self.key_exprs)}"
                self.key_exprs[_normal(node)] = name
                with_columns.append(self.scope(node).alias(name))
                self.keys.append(name)
        if with_columns:
            self.steps.append(Step("with_columns", tuple(with_columns)))

    def _resolve_group_item(self, item: exp.Expr) -> exp.Expr:
        """A position (``GROUP BY 1``) or an output alias → that select item."""
        if isinstance(item, exp.Literal) and not item.is_string:
            position = int(item.name) if item.name.isdigit() else 0
            if not 1 <= position <= len(self.items):
                raise PlanError(f"GROUP BY position {item.name} is not in the select list")
            return self.items[position - 1][0]
        if isinstance(item, exp.Column) and not item.table:
            try:
                self.scope.column_name(item)  # input columns win over output aliases
            except CatalogError:
                aliased = [node for node, alias in self.items if alias == item.name]
                if len(aliased) == 1:
                    return aliased[0]
                raise
        return item

    def plan(self, emit: str | None) -> Node:
        outputs = Translator(self._internal_schema, hook=self._hook, clause="the select list")
        names = output_names(self.items)
        output = []
        time_output: dict[bool, str] = {}
        for (node, _), name in zip(self.items, names, strict=True):
            output.append(outputs(node).alias(name))
            window = _window_call(node, self.scope)
            if window is not None and self.window is not None:
                time_output.setdefault(window.end, name)
        having_node = self.query.args.get("having")
        having = None
        if having_node is not None:
            outputs.clause = "HAVING"
            having = condition(outputs, having_node.this, "HAVING")
        if self.window is None:
            return KeyedAgg(self.input, tuple(self.keys), tuple(self.aggs), output_columns(output),
                            having)
        # An input without event time is the validation pass's to refuse; which
        # column tumble() names is the query's text, so it is checked here.
        time_column = self.input.time_column
        if time_column is not None and self.window.column != time_column:
            raise PlanError(f"{self.window.kind}(...) must use the event-time column "
                            f"{time_column!r} of {self.label}, not {self.window.column!r}")
        end = True in time_output
        return WindowAgg(
            self.input, tuple(self.keys), self.window.spec, tuple(self.aggs),
            output_columns(output), having, emit_mode(emit),
            time_output.get(True, time_output.get(False)), "end" if end else "start",
        )

    def _internal_schema(self) -> pl.Schema:
        columns = dict(KeyedAgg(self.input, tuple(self.keys), tuple(self.aggs), ()).internal_schema)
        columns[WINDOW_START] = columns[WINDOW_END] = pl.Datetime("us")
        return pl.Schema(columns)

    def _hook(self, node: exp.Expr) -> pl.Expr | None:
        if isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
            name = self.scope.column_name(node)
            if name not in self.keys:
                raise PlanError(f"column {name!r} must appear in GROUP BY or be used in an "
                                "aggregate function")
            return pl.col(name)
        if self.key_exprs and _normal(node) in self.key_exprs:
            return pl.col(self.key_exprs[_normal(node)])
        window = _window_call(node, self.scope)
        if window is not None:
            wanted = self.window
            if wanted is None:
                raise PlanError(f"{node_text(node)} needs GROUP BY {window.kind}(...)")
            if (window.kind, window.column, window.spec) != (wanted.kind, wanted.column,
                                                             wanted.spec):
                raise PlanError(f"{node_text(node)} does not match the GROUP BY window "
                                f"{wanted.kind}({wanted.column}, {wanted.spec.describe()})")
            return pl.col(WINDOW_END if window.end else WINDOW_START)
        if isinstance(node, exp.Filter) and is_aggregate(node.this):
            return pl.col(self._agg(node.this, node.expression.this))
        if is_aggregate(node):
            return pl.col(self._agg(node))
        return None

    def _agg(self, node: exp.Expr, where: exp.Expr | None = None) -> str:
        """The internal column of aggregate ``node`` (computed once per query), over
        the rows where ``where`` (its FILTER) holds, if given."""
        name, arg = function_name(node), node.this
        func: AggFunc
        expr: pl.Expr | None = None
        if isinstance(node, exp.Count):
            if arg is None:
                raise PlanError("count() needs an argument: count(*) or count(x)")
            if isinstance(arg, exp.Star):
                func = "count_star"
            elif isinstance(arg, exp.Distinct):
                if len(arg.expressions) != 1:
                    raise PlanError(f"count(DISTINCT ...) takes one expression: "
                                    f"{node_text(node)}")
                func, expr = "n_unique", self.args(arg.expressions[0])
            else:
                func, expr = "count", self.args(arg)
        elif name in _BY_SQL_NAME:
            if isinstance(arg, exp.Distinct):
                raise PlanError(f"{name}(DISTINCT ...) is not supported; "
                                "only count(DISTINCT x) is")
            if node.expressions:
                raise PlanError(f"{name} takes one argument: {node_text(node)}")
            func, expr = _BY_SQL_NAME[name], self.args(arg)
        else:
            raise PlanError(f"aggregate function {name} is not supported; "
                            f"supported: {_SUPPORTED}")
        if where is not None:
            func, expr = self._filtered(node, func, expr, where)
        for agg in self.aggs:
            same_expr = agg.expr is expr is None or (
                agg.expr is not None and expr is not None and agg.expr.meta.eq(expr))
            if agg.func == func and same_expr:
                return agg.name
        self.aggs.append(Agg(f"__agg{len(self.aggs)}", func, expr,
                             order="event", null_sum="null", count_null=False))
        return self.aggs[-1].name

    def _filtered(self, node: exp.Expr, func: AggFunc, expr: pl.Expr | None,
                  where: exp.Expr) -> tuple[AggFunc, pl.Expr]:
        """``func`` over ``expr`` FILTER (WHERE ``where``): the same aggregate over
        a column that is null where the filter does not hold, which every
        aggregate but first/last skips; computed row by row before the
        aggregate, so its partials merge as before. count(*) becomes a count of
        the rows the filter keeps."""
        if func in ("first", "last"):
            raise PlanError(f"{function_name(node)}(...) FILTER (WHERE ...) is not supported: "
                            "first and last values take nulls too, so filtered-out rows cannot "
                            "be told from null values; filter the rows in WHERE or a subquery")
        keep = condition(self.filters, where, "FILTER")
        if func == "count_star":
            return "count", pl.when(keep).then(pl.lit(True))
        assert expr is not None
        return func, pl.when(keep).then(expr)
