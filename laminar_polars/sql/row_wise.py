"""The row-wise parts of a SELECT plan: the select list, conditions, row steps.

A row-wise SELECT (`laminar_polars.sql.select`) is planned from these alone; an
aggregating one (`laminar_polars.sql.aggregation`) uses them for its input
(WHERE) and its outputs (the select list, HAVING). They sit below both modules
so that the two need not import each other. The naming rules for output
columns are in `laminar_polars.sql.select`.
"""

from __future__ import annotations

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import Node, RowMap, Step
from laminar_polars.sql.expressions import Columns, Translator, function_name
from laminar_polars.sql.semantics import node_text

__all__ = ["add_row_steps", "condition", "output_columns", "output_names", "select_items"]


def select_items(
    query: exp.Select, schema: pl.Schema, qualifiers: frozenset[str] | Columns
) -> list[tuple[exp.Expr, str | None]]:
    """(expression, explicit alias) per output column; ``*`` and ``t.*`` expanded
    (over a join, ``t.*`` to relation ``t``'s columns)."""
    items: list[tuple[exp.Expr, str | None]] = []
    for item in query.expressions:
        star = isinstance(item, exp.Star) or (
            isinstance(item, exp.Column) and isinstance(item.this, exp.Star)
        )
        if star:
            table = item.table if isinstance(item, exp.Column) else ""
            if table and table not in qualifiers:
                raise CatalogError(f"unknown table {table!r} in {node_text(item)}")
            if isinstance(qualifiers, frozenset):
                items += [(exp.column(name, quoted=True), None) for name in schema]
            elif table:  # t.*: t's columns by their own names
                items += [(exp.column(name, table=table, quoted=True), None)
                          for name in qualifiers[table]]
            else:  # * over a join: every relation's columns, by the join's names (ts, ts:q)
                items += [(exp.column(name, table=relation, quoted=True), column)
                          for relation, columns in qualifiers.items()
                          for name, column in columns.items()]
        elif isinstance(item, exp.Alias):
            items.append((item.this, item.alias))
        else:
            items.append((item, None))
    return items


def output_names(items: list[tuple[exp.Expr, str | None]]) -> list[str]:
    """The output column name of each item (the rules: `laminar_polars.sql.select`)."""
    explicit = [alias for _, alias in items if alias]
    for given in explicit:
        if explicit.count(given) > 1:
            raise PlanError(f"output column name {given!r} is given twice")
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


def _derived_name(node: exp.Expr) -> str | None:
    while isinstance(node, (exp.Paren, exp.Cast)):
        node = node.this
    if isinstance(node, exp.Column):
        return node.name
    if isinstance(node, (exp.Func, exp.Case)):
        return function_name(node)
    return None


def output_columns(exprs: list[pl.Expr]) -> tuple[pl.Expr, ...]:
    """A select of constants alone would give one row: repeat them once per row."""
    if any(e.meta.root_names() for e in exprs):
        return tuple(exprs)
    return tuple(pl.repeat(e, pl.len()).alias(e.meta.output_name()) for e in exprs)


def add_row_steps(node: Node, steps: list[Step]) -> Node:
    """``node`` followed by the row-wise ``steps`` (``node`` itself if there are none)."""
    if not steps:
        return node
    if isinstance(node, RowMap):  # a row-wise subquery: one RowMap
        return RowMap(node.input, (*node.steps, *steps))
    return RowMap(node, tuple(steps))


def condition(scope: Translator, node: exp.Expr, clause: str) -> pl.Expr:
    """``node`` as a boolean expression; ``clause`` (WHERE, HAVING) names it in errors."""
    predicate = scope(node)
    dtype = scope.dtype(predicate)
    if dtype is not None and dtype != pl.Boolean:
        raise PlanError(f"{clause} needs a boolean condition, got {dtype}: {node_text(node)}")
    return predicate
