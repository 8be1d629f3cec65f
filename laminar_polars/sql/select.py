"""A SQL SELECT tree → the logical plan (`laminar_polars.plan`) of SPEC §3.

:func:`plan_select` reads one SELECT over one relation (a source, a view, or a
subquery in FROM) and builds:

* no GROUP BY and no aggregate → `RowMap` (``WHERE`` → ``filter``, select list → ``select``);
* ``GROUP BY`` with one ``tumble(ts, size [, offset])``, ``hop(ts, slide, size [, offset])``
  or ``session(ts, gap)`` → `WindowAgg` (``EMIT ON WINDOW CLOSE`` unless ``EMIT ON UPDATE``);
* any other ``GROUP BY``, or aggregates without one → `KeyedAgg` (a continuous aggregate).

Aggregates: ``count(*)``, ``count(x)``, ``count(DISTINCT x)``, ``sum``, ``min``, ``max``,
``avg``, ``first_value``, ``last_value`` (by event time), over any scalar expression;
identical ones are computed once as ``__agg0``, ``__agg1``... Expression keys of
GROUP BY are computed first as ``__key0``... GROUP BY may also name a select item
by its alias or position. Scalar expressions: see `laminar_polars.sql.expressions`.

Output names: the alias if given; else a plain column's name (a ``CAST``'s, its
operand's); else a function's lower-case name (``count``, ``sum``, ``avg``,
``first_value``, ``upper``, ``tumble``, ``tumble_end``, ``case``...); else ``_col<n>``
(``n`` the item's 1-based position). A derived name already taken gets ``_1``,
``_2``... (``max``, ``max_1``); two equal aliases are an error.

Refused with `PlanError`: joins, set operations, ORDER BY, LIMIT, OFFSET, DISTINCT,
window functions (OVER), WITH, subqueries in expressions, aggregating an input that
is updated in place, ``EMIT ON WINDOW CLOSE`` without a window, and any function or
construct not listed. Unknown columns raise `CatalogError`.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import Scan
>>> from laminar_polars.sql import parse_statements, plan_select
>>> trades = Scan("trades", pl.Schema({"symbol": pl.String, "price": pl.Float64,
...                                     "ts": pl.Datetime("us")}), "ts")
>>> [view] = parse_statements(
...     "CREATE MATERIALIZED VIEW bars AS SELECT symbol, max(price) - min(price) AS spread, "
...     "tumble_end(ts, INTERVAL '1' MINUTE) AS window_end FROM trades "
...     "GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)")
>>> plan = plan_select(view.query, lambda name: trades, view.emit)
>>> plan.window.describe(), plan.emit, plan.time_output
('tumble(size=60000000us)', 'on_window_close', 'window_end')
>>> [(a.name, a.func) for a in plan.aggs]
[('__agg0', 'max'), ('__agg1', 'min')]
>>> print(plan.output[1])
[(col("__agg0")) - (col("__agg1"))].alias("spread")
>>> list(plan.schema)
['symbol', 'spread', 'window_end']
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    WindowSpec,
    apply_steps,
    explain,
)
from laminar_polars.sql.expressions import Translator, function_name, interval_us, node_text

__all__ = ["explain_select", "plan_select"]

_ALLOWED = {"expressions", "from_", "where", "group", "having"}
_UNORDERED = {"order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET", "distinct": "DISTINCT",
              "sort": "SORT BY", "fetch": "FETCH"}
_CLAUSES = {"joins": "JOIN", "laterals": "LATERAL", "with_": "WITH (common table expressions)",
            "windows": "WINDOW", "qualify": "QUALIFY", "pivots": "PIVOT"}
_EMITS = (None, "on_window_close", "on_update")
_WINDOW_ARITY = {"tumble": (2, 3), "hop": (3, 4), "session": (2, 2)}
_WINDOW_USAGE = {"tumble": "tumble(ts, size [, offset])",
                 "hop": "hop(ts, slide, size [, offset])", "session": "session(ts, gap)"}
_AGG_FUNCS: dict[type[exp.Expression], str] = {
    exp.Sum: "sum", exp.Min: "min", exp.Max: "max", exp.Avg: "mean",
    exp.FirstValue: "first", exp.LastValue: "last",
}


def plan_select(query: exp.Expression, relation: Callable[[str], Scan], emit: str | None) -> Node:
    """Plan ``query``; ``relation(name)`` gives the `Scan` of a source or view.

    ``emit`` is the view's ``EMIT`` clause ('on_window_close', 'on_update' or None).
    Raises `PlanError` for what the engine cannot maintain, `CatalogError` for
    unknown names.
    """
    if emit not in _EMITS:
        raise PlanError(f"unknown emit mode {emit!r}; expected 'on_window_close' or 'on_update'")
    node = _plan(query, relation, emit)
    try:
        _dry_run(node)
    except pl.exceptions.PolarsError as error:
        raise PlanError(f"the query does not type-check: {error}".split("\n")[0]) from None
    return node


def explain_select(query: exp.Expression, relation: Callable[[str], Scan]) -> str:
    """The plan of ``query`` as text (`laminar_polars.plan.explain`)."""
    return explain(plan_select(query, relation, None))


def _dry_run(node: Node) -> pl.DataFrame:
    """Run ``node`` on no rows: Polars checks every expression's types (a schema alone
    does not catch e.g. ``upper()`` of a number)."""
    if isinstance(node, Scan):
        return pl.DataFrame(schema=node.schema)
    rows = _dry_run(node.input).lazy()
    if isinstance(node, RowMap):
        return apply_steps(rows, node.steps).collect()
    rows.select([a.expr.alias(a.name) for a in node.aggs if a.expr is not None]).collect()
    internal = pl.LazyFrame(schema=node.internal_schema)
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(node.output).collect()


def _outputs(exprs: list[pl.Expr]) -> tuple[pl.Expr, ...]:
    """A select of constants alone would give one row: repeat them once per row."""
    if any(e.meta.root_names() for e in exprs):
        return tuple(exprs)
    return tuple(pl.repeat(e, pl.len()).alias(e.meta.output_name()) for e in exprs)


# -- FROM and the shape of the query --------------------------------------------------

def _plan(query: exp.Expression, relation: Callable[[str], Scan], emit: str | None) -> Node:
    while isinstance(query, (exp.Subquery, exp.Paren)):
        query = query.this
    if isinstance(query, exp.SetOperation):
        raise PlanError(f"{query.key.upper()} is not supported yet")
    if not isinstance(query, exp.Select):
        raise PlanError(f"expected a SELECT, got {node_text(query)}")
    for key, value in query.args.items():
        if not value or key in _ALLOWED:
            continue
        if key in _UNORDERED:
            raise PlanError(f"{_UNORDERED[key]} in a materialized view is not supported "
                            "(a view's rows are a set, maintained as input arrives)")
        raise PlanError(f"{_CLAUSES.get(key, key.upper())} is not supported yet")
    source, qualifiers, label = _from(query, relation)
    scope = Translator(source.schema, qualifiers, clause="WHERE")
    where = query.args.get("where")
    steps = [Step("filter", (_predicate(scope, where.this, "WHERE"),))] if where else []
    items = _select_items(query, source.schema, qualifiers)
    aggregated = bool(query.args.get("group") or query.args.get("having")) or any(
        node.find(exp.AggFunc) for node, _ in items
    )
    if not aggregated:
        scope.clause = "the select list"
        names = _output_names(items)
        pairs = zip(items, names, strict=True)
        select = _outputs([scope(node).alias(name) for (node, _), name in pairs])
        return _rowmap(source, [*steps, Step("select", select)])
    if not source.appends_only:
        raise PlanError(
            f"cannot aggregate over {label}: its rows are updated in place (a continuous "
            "aggregate or an EMIT ON UPDATE view); only row-wise queries may read it"
        )
    return _Aggregation(query, source, scope, steps, items, label).plan(emit)


def _from(query: exp.Select, relation: Callable[[str], Scan]) -> tuple[Node, frozenset[str], str]:
    from_ = query.args.get("from_")
    if from_ is None:
        raise PlanError("a materialized view needs FROM <source or view>")
    table = from_.this
    alias = table.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        raise PlanError(f"column aliases in FROM are not supported: {node_text(table)}")
    if isinstance(table, exp.Subquery):
        node = _plan(table.this, relation, None)
        return node, frozenset([table.alias] if table.alias else []), "the subquery in FROM"
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise PlanError(f"FROM must name one source or view, got {node_text(table)}")
    if table.args.get("db") or table.args.get("catalog"):
        raise PlanError(f"qualified names are not supported: {node_text(table)}")
    scan = relation(table.name)
    return scan, frozenset([table.alias or table.name]), repr(table.name)


def _select_items(
    query: exp.Select, schema: pl.Schema, qualifiers: frozenset[str]
) -> list[tuple[exp.Expression, str | None]]:
    """(expression, explicit alias) per output column; ``*`` and ``t.*`` expanded."""
    items: list[tuple[exp.Expression, str | None]] = []
    for item in query.expressions:
        star = isinstance(item, exp.Star) or (
            isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
        )
        if star:
            table = item.table if isinstance(item, exp.Column) else ""
            if table and table not in qualifiers:
                raise CatalogError(f"unknown table {table!r} in {node_text(item)}")
            items += [(exp.column(name, quoted=True), None) for name in schema]
        elif isinstance(item, exp.Alias):
            items.append((item.this, item.alias))
        else:
            items.append((item, None))
    return items


def _output_names(items: list[tuple[exp.Expression, str | None]]) -> list[str]:
    explicit = [alias for _, alias in items if alias]
    for alias in explicit:
        if explicit.count(alias) > 1:
            raise PlanError(f"output column name {alias!r} is given twice")
    taken, names = set(explicit), []
    for position, (node, alias) in enumerate(items, 1):
        if alias:
            names.append(alias)
            continue
        base = _derived_name(node) or f"_col{position}"
        name, suffix = base, 0
        while name in taken:
            suffix += 1
            name = f"{base}_{suffix}"
        taken.add(name)
        names.append(name)
    return names


def _derived_name(node: exp.Expression) -> str | None:
    while isinstance(node, (exp.Paren, exp.Cast)):
        node = node.this
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, (exp.Func, exp.Case)):
        return function_name(node)
    return None


def _rowmap(node: Node, steps: list[Step]) -> Node:
    if not steps:
        return node
    if isinstance(node, RowMap):  # a row-wise subquery: one RowMap
        return RowMap(node.input, (*node.steps, *steps))
    return RowMap(node, tuple(steps))


def _predicate(scope: Translator, node: exp.Expression, clause: str) -> pl.Expr:
    predicate = scope(node)
    dtype = scope.dtype(predicate)
    if dtype is not None and dtype != pl.Boolean:
        raise PlanError(f"{clause} needs a boolean condition, got {dtype}: {node_text(node)}")
    return predicate


def _normal(node: exp.Expression) -> str:
    """``node``'s text without table qualifiers or outer parentheses, to match keys."""
    while isinstance(node, exp.Paren):
        node = node.this
    node = node.copy()
    for column in node.find_all(exp.Column):
        column.set("table", None)
    return node.sql()


# -- aggregates ---------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Window:
    kind: str
    end: bool
    column: str
    spec: WindowSpec


def _window_call(node: exp.Expression, scope: Translator) -> _Window | None:
    if not isinstance(node, exp.Anonymous):
        return None
    name = function_name(node)
    kind, _, suffix = name.partition("_")
    if kind not in _WINDOW_ARITY or suffix not in ("", "end"):
        return None
    args = node.expressions
    low, high = _WINDOW_ARITY[kind]
    if not low <= len(args) <= high or not isinstance(args[0], exp.Column):
        raise PlanError(f"{name}: expected {_WINDOW_USAGE[kind].replace(kind, name, 1)}, "
                        f"got {node_text(node)}")
    durations = [interval_us(arg) for arg in args[1:]]
    if kind == "hop":
        slide, size, *offset = durations
    else:
        size, *offset = durations
        slide = size
    try:
        spec = WindowSpec(kind, size, slide, offset[0] if offset else 0)  # type: ignore[arg-type]
    except ValueError as error:
        raise PlanError(f"{node_text(node)}: {error}") from None
    return _Window(kind, suffix == "end", scope.column_name(args[0]), spec)


class _Aggregation:
    """Plans one aggregating SELECT: GROUP BY keys, the window, aggregates, outputs."""

    def __init__(self, query: exp.Select, source: Node, scope: Translator,
                 steps: list[Step], items: list[tuple[exp.Expression, str | None]],
                 label: str) -> None:
        self.query, self.source, self.scope, self.items, self.label = (
            query, source, scope, items, label)
        self.steps = steps
        self.keys: list[str] = []
        self.key_exprs: dict[str, str] = {}  # normalized SQL → internal key column
        self.window: _Window | None = None
        self.aggs: list[Agg] = []
        self.args = Translator(source.schema, scope.qualifiers, clause="an aggregate's argument")
        self._group_by()
        self.input = _rowmap(source, self.steps)

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
            elif node.find(exp.AggFunc):
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

    def _resolve_group_item(self, item: exp.Expression) -> exp.Expression:
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
        names = _output_names(self.items)
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
            having = _predicate(outputs, having_node.this, "HAVING")
        if self.window is None:
            if emit == "on_window_close":
                raise PlanError("EMIT ON WINDOW CLOSE needs a window in GROUP BY "
                                "(tumble, hop or session)")
            return KeyedAgg(self.input, tuple(self.keys), tuple(self.aggs), _outputs(output),
                            having)
        time_column = self.input.time_column
        if time_column is None:
            raise PlanError(f"{self.window.kind}(...) needs an event-time column, and {self.label} "
                            "has none (a source's WATERMARK column, or a view's window column)")
        if self.window.column != time_column:
            raise PlanError(f"{self.window.kind}(...) must use the event-time column "
                            f"{time_column!r} of {self.label}, not {self.window.column!r}")
        end = True in time_output
        return WindowAgg(
            self.input, tuple(self.keys), self.window.spec, tuple(self.aggs), _outputs(output),
            having, emit or "on_window_close",  # type: ignore[arg-type]
            time_output.get(True, time_output.get(False)), "end" if end else "start",
        )

    def _internal_schema(self) -> pl.Schema:
        columns = dict(KeyedAgg(self.input, tuple(self.keys), tuple(self.aggs), ()).internal_schema)
        columns[WINDOW_START] = columns[WINDOW_END] = pl.Datetime("us")
        return pl.Schema(columns)

    def _hook(self, node: exp.Expression) -> pl.Expr | None:
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
        if isinstance(node, exp.AggFunc):
            return pl.col(self._agg(node))
        return None

    def _agg(self, node: exp.AggFunc) -> str:
        name, arg = function_name(node), node.this
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
        elif type(node) in _AGG_FUNCS:
            if isinstance(arg, exp.Distinct):
                raise PlanError(f"{name}(DISTINCT ...) is not supported; "
                                "only count(DISTINCT x) is")
            if node.expressions:
                raise PlanError(f"{name} takes one argument: {node_text(node)}")
            func, expr = _AGG_FUNCS[type(node)], self.args(arg)
        else:
            raise PlanError(f"aggregate function {name} is not supported; supported: count, "
                            "sum, min, max, avg, first_value, last_value")
        for agg in self.aggs:
            same_expr = agg.expr is expr is None or (
                agg.expr is not None and expr is not None and agg.expr.meta.eq(expr))
            if agg.func == func and same_expr:
                return agg.name
        self.aggs.append(Agg(f"__agg{len(self.aggs)}", func, expr,  # type: ignore[arg-type]
                             order="event", null_sum="null", count_null=False))
        return self.aggs[-1].name
