"""A SQL SELECT tree → the logical plan (`laminar_polars.plan`) of SPEC §3.

:func:`plan_select` reads one SELECT over one relation (a source, a view, or a
subquery in FROM) and builds:

* no GROUP BY and no aggregate → `RowMap` (``WHERE`` → ``filter``, select list → ``select``);
* ``GROUP BY`` with one ``tumble(ts, size [, offset])``, ``hop(ts, slide, size [, offset])``
  or ``session(ts, gap)`` → `WindowAgg` (``EMIT ON WINDOW CLOSE`` unless ``EMIT ON UPDATE``);
  sizes, slides and gaps must be positive, and a hop's slide must not exceed its size;
* any other ``GROUP BY``, or aggregates without one → `KeyedAgg` (a continuous aggregate).

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

Refused with `PlanError`: joins, set operations, ORDER BY, LIMIT, OFFSET, DISTINCT,
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
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    Wording,
    aggregate,
    apply_steps,
    explain,
    validate,
)
from laminar_polars.sql.aggregation import Aggregation
from laminar_polars.sql.expressions import Translator
from laminar_polars.sql.row_wise import (
    add_row_steps,
    condition,
    output_columns,
    output_names,
    select_items,
)
from laminar_polars.sql.semantics import node_text

__all__ = ["explain_select", "plan_select"]

_ALLOWED = {"expressions", "from_", "where", "group", "having"}
_UNORDERED = {"order": "ORDER BY", "limit": "LIMIT", "offset": "OFFSET", "distinct": "DISTINCT",
              "sort": "SORT BY", "fetch": "FETCH"}
_CLAUSES = {"joins": "JOIN", "laterals": "LATERAL", "with_": "WITH (common table expressions)",
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


def plan_select(query: exp.Expr, relation: Callable[[str], Scan], emit: str | None) -> Node:
    """Plan ``query``; ``relation(name)`` gives the `Scan` of a source or view.

    ``emit`` is the view's ``EMIT`` clause ('on_window_close', 'on_update' or None).
    Raises `PlanError` for what the engine cannot maintain, `CatalogError` for
    unknown names.
    """
    labels: dict[Node, str] = {}  # each aggregate's input, as the query names it
    node = validate(_plan(query, relation, emit, labels), emit, _SqlWording(inputs=labels))
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
    rows = _dry_run(node.input).lazy()
    if isinstance(node, RowMap):
        return apply_steps(rows, node.steps).collect()
    rows.select([a.expr.alias(a.name) for a in node.aggs if a.expr is not None]).collect()
    internal = pl.LazyFrame(schema=node.internal_schema)
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(node.output).collect()


# -- FROM and the shape of the query --------------------------------------------------

def _plan(query: exp.Expr, relation: Callable[[str], Scan], emit: str | None,
          labels: dict[Node, str]) -> Node:
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
    source, qualifiers, label = _from(query, relation, labels)
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


def _from(query: exp.Select, relation: Callable[[str], Scan],
          labels: dict[Node, str]) -> tuple[Node, frozenset[str], str]:
    from_ = query.args.get("from_")
    if from_ is None:
        raise PlanError("a materialized view needs FROM <source or view>")
    table = from_.this
    alias = table.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        raise PlanError(f"column aliases in FROM are not supported: {node_text(table)}")
    if isinstance(table, exp.Subquery):
        node = _plan(table.this, relation, None, labels)
        return node, frozenset([table.alias] if table.alias else []), "the subquery in FROM"
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise PlanError(f"FROM must name one source or view, got {node_text(table)}")
    if table.args.get("db") or table.args.get("catalog"):
        raise PlanError(f"qualified names are not supported: {node_text(table)}")
    scan = relation(table.name)
    return scan, frozenset([table.alias or table.name]), repr(table.name)
