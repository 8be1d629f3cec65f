"""A SQL SELECT tree → the logical plan (`laminar_polars.plan`) of SPEC §3.

:func:`plan_select` reads one SELECT over one relation (a source, a view, a
subquery in FROM, or their joins, planned in `laminar_polars.sql.joins`) and
builds:

* no GROUP BY and no aggregate → `RowMap` (``WHERE`` → ``filter``, select list → ``select``);
* ``GROUP BY`` with one ``tumble(ts, size [, offset])``, ``hop(ts, slide, size [, offset])``
  or ``session(ts, gap)`` → `WindowAgg` (``EMIT ON WINDOW CLOSE`` unless ``EMIT ON UPDATE``);
  sizes, slides and gaps must be positive, and a hop's slide must not exceed its size;
* any other ``GROUP BY``, or aggregates without one → `KeyedAgg` (a continuous aggregate).

``SELECT ... UNION ALL SELECT ...`` → `Union` of the plans (columns matched by
position, named by the first SELECT; their types must be the same).

The aggregating plans are built in `laminar_polars.sql.aggregation`; the select
list, conditions and row-wise steps that all three plans share are in
`laminar_polars.sql.row_wise`.

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

Refused with `PlanError`: the joins `laminar_polars.sql.joins` refuses, UNION
(without ALL), INTERSECT and EXCEPT, ORDER BY, LIMIT, OFFSET, DISTINCT,
window functions (OVER), WITH, subqueries in expressions, and any function or
construct not listed; and, by `laminar_polars.plan.validate` (which every plan goes
through, in SQL's words), aggregating an input that is updated in place, a window or
``first_value``/``last_value`` over an input without event time, ``EMIT ON WINDOW
CLOSE`` without a window, ``EMIT ON UPDATE`` of session windows. A row-wise SELECT
ignores EMIT. Unknown columns raise `CatalogError`.

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

from laminar_polars.errors import PlanError
from laminar_polars.plan import (
    Agg,
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    LookupJoin,
    Node,
    RowMap,
    Scan,
    Step,
    Union,
    WindowAgg,
    Wording,
    aggregate,
    apply_steps,
    explain,
    validate,
)
from laminar_polars.sql.aggregation import Aggregation
from laminar_polars.sql.expressions import Columns, Translator
from laminar_polars.sql.joins import plan_from
from laminar_polars.sql.row_wise import (
    add_row_steps,
    condition,
    output_columns,
    output_names,
    select_items,
)
from laminar_polars.sql.semantics import node_text

__all__ = ["explain_select", "plan_select"]

_ALLOWED = {"expressions", "from_", "joins", "where", "group", "having"}
_UNORDERED = {"order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET", "distinct": "DISTINCT",
              "sort": "SORT BY", "fetch": "FETCH"}
_CLAUSES = {"laterals": "LATERAL", "with_": "WITH (common table expressions)",
            "windows": "WINDOW", "qualify": "QUALIFY", "pivots": "PIVOT"}


@dataclasses.dataclass(frozen=True)
class _SqlWording(Wording):
    """The validation pass's messages in SQL's words."""

    on_window_close: str = "EMIT ON WINDOW CLOSE"
    on_update: str = "EMIT ON UPDATE"
    windowed: str = "a window in GROUP BY (tumble, hop or session)"
    grouped: str = "a GROUP BY"
    row_wise_ignores_emit: bool = True  # EMIT belongs to the SELECT's own GROUP BY

    def window(self, node: WindowAgg) -> str:
        return f"{node.window.kind}(...)"

    def aggregate(self, agg: Agg) -> str:
        return f"{aggregate(agg.func).sql_name}(...)"


def plan_select(query: exp.Expr, relation: Callable[[str], Scan], emit: str | None,
                state_ttl_us: int | None = None) -> Node:
    """Plan ``query``; ``relation(name)`` gives the `Scan` of a source, view or table.

    ``emit`` is the view's ``EMIT`` clause ('on_window_close', 'on_update' or None).
    ``state_ttl_us`` is its ``WITH (state_ttl = ...)``: the event time an
    equi-join the watermarks do not free keeps its rows for.
    Raises `PlanError` for what the engine cannot maintain, `CatalogError` for
    unknown names.
    """
    labels: dict[Node, str] = {}  # each aggregate's input, as the query names it
    planned = _plan(query, relation, emit, labels, state_ttl_us)
    if state_ttl_us is not None and not any(
            isinstance(step, EquiJoin) and step.state_ttl_us is not None
            for step in _steps(planned)):
        raise PlanError("state_ttl bounds the state of a join of two streams on keys alone; "
                        "this view has none (window, interval and ASOF joins are freed by the "
                        "watermarks)")
    node = validate(planned, emit, _SqlWording(inputs=labels))
    try:
        _dry_run(node)
    except pl.exceptions.PolarsError as error:
        raise PlanError(f"the query does not type-check: {error}".split("\n")[0]) from None
    return node


def explain_select(query: exp.Expr, relation: Callable[[str], Scan]) -> str:
    """The plan of ``query`` as text (`laminar_polars.plan.explain`)."""
    return explain(plan_select(query, relation, None))


def _dry_run(node: Node) -> pl.DataFrame:
    """Run ``node`` on no rows: Polars checks every expression's types (a schema alone
    does not catch e.g. ``upper()`` of a number)."""
    if isinstance(node, Scan):
        return pl.DataFrame(schema=node.schema)
    if isinstance(node, Union):
        return pl.concat([_dry_run(child) for child in node.inputs])
    if isinstance(node, AsofJoin | IntervalJoin | EquiJoin):
        return node.apply(_dry_run(node.left).lazy(), _dry_run(node.right).lazy()).collect()
    if isinstance(node, LookupJoin):
        table = pl.LazyFrame(schema=node.table_schema)
        return node.apply(_dry_run(node.left).lazy(), table).collect()
    rows = _dry_run(node.input).lazy()
    if isinstance(node, RowMap):
        return apply_steps(rows, node.steps).collect()
    rows.select([a.expr.alias(a.name) for a in node.aggs if a.expr is not None]).collect()
    internal = pl.LazyFrame(schema=node.internal_schema)
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(node.output).collect()


# -- FROM and the shape of the query --------------------------------------------------

def _steps(node: Node) -> list[Node]:
    return [node, *(step for child in node.inputs for step in _steps(child))]


def _plan(query: exp.Expr, relation: Callable[[str], Scan], emit: str | None,
          labels: dict[Node, str], state_ttl_us: int | None = None) -> Node:
    while isinstance(query, (exp.Subquery, exp.Paren)):
        query = query.this
    if isinstance(query, exp.Union) and not query.args.get("distinct"):
        return _union(query, relation, emit, labels, state_ttl_us)
    if isinstance(query, exp.SetOperation):
        what = query.key.upper()
        if isinstance(query, exp.Union):
            raise PlanError("UNION (without ALL) drops duplicate rows, which a view cannot do "
                            "as rows keep coming; use UNION ALL")
        raise PlanError(f"{what} is not supported: a view's rows only append")
    if not isinstance(query, exp.Select):
        raise PlanError(f"expected a SELECT, got {node_text(query)}")
    for key, value in query.args.items():
        if not value or key in _ALLOWED:
            continue
        if key in _UNORDERED:
            raise PlanError(f"{_UNORDERED[key]} in a materialized view is not supported "
                            "(a view's rows are a set, maintained as input arrives)")
        raise PlanError(f"{_CLAUSES.get(key, key.upper())} is not supported yet")
    from_ = plan_from(query, relation,
                      lambda sub: _plan(sub, relation, None, labels, state_ttl_us), state_ttl_us)
    source, label = from_.node, from_.label
    qualifiers: frozenset[str] | Columns = (from_.columns if from_.joined
                                            else frozenset(from_.columns))
    scope = Translator(source.schema, qualifiers, clause="WHERE")
    where = query.args.get("where")
    steps = [Step("filter", (condition(scope, where.this, "WHERE"),))] if where else []
    items = select_items(query, source.schema, qualifiers)
    aggregated = bool(query.args.get("group") or query.args.get("having")) or any(
        node.find(exp.AggFunc) for node, _ in items
    )
    if not aggregated:
        scope.clause = "the select list"
        names = output_names(items)
        pairs = zip(items, names, strict=True)
        select = output_columns([scope(node).alias(name) for (node, _), name in pairs])
        return add_row_steps(source, [*steps, Step("select", select)])
    node = Aggregation(query, source, scope, steps, items, label).plan(emit)
    labels[node] = label
    return node


def _union(query: exp.Union, relation: Callable[[str], Scan], emit: str | None,
           labels: dict[Node, str], state_ttl_us: int | None) -> Node:
    """UNION ALL: the parts' plans, columns matched by position and named by the first."""
    for key, value in query.args.items():
        if value and key in _UNORDERED:
            raise PlanError(f"{_UNORDERED[key]} in a materialized view is not supported "
                            "(a view's rows are a set, maintained as input arrives)")
    parts: list[exp.Expr] = []
    pending: list[exp.Expr] = [query]
    while pending:  # UNION ALL is associative: flatten a chain of them
        part = pending.pop(0)
        while isinstance(part, (exp.Subquery, exp.Paren)):
            part = part.this
        if isinstance(part, exp.Union) and not part.args.get("distinct") and not any(
                part.args.get(k) for k in _UNORDERED):
            pending[:0] = [part.this, part.expression]
        else:
            parts.append(part)
    nodes = [_plan(part, relation, emit, labels, state_ttl_us) for part in parts]
    first = nodes[0].schema
    aligned = [nodes[0]]
    for position, node in enumerate(nodes[1:], 2):
        schema = node.schema
        if len(schema) != len(first):
            raise PlanError(f"UNION ALL: SELECT {position} has {len(schema)} columns, the first "
                            f"{len(first)}")
        for (name, dtype), (other, other_type) in zip(first.items(), schema.items(),
                                                      strict=True):
            if dtype != other_type:
                raise PlanError(f"UNION ALL: column {name!r} is {dtype} in the first SELECT and "
                                f"{other_type} ({other!r}) in SELECT {position}; CAST one")
        if list(schema) != list(first):
            node = add_row_steps(node, [Step("select", tuple(
                pl.col(other).alias(name) for name, other in zip(first, schema, strict=True)))])
        aligned.append(node)
    return Union(tuple(aligned))
