"""Scalar SQL expressions (sqlglot trees) → Polars expressions.

A view's scalar SQL means what Polars SQL means, so Polars builds it: one walk, in
:class:`Translator`, writes an expression's tree back as Polars SQL text and hands
it to ``pl.sql_expr`` (`laminar_polars.sql.polars_sql`). On the way the translator
does what Polars' expression parser cannot, since it sees the text alone:

* it names columns: a reference becomes the schema's column it means (an
  unquoted name matches case-insensitively; over a join, ``q.ts`` is the join's
  ``ts:q``);
* it asks a ``hook`` first about every node: the SELECT planner replaces
  aggregates, window calls and GROUP BY expressions by columns of an
  aggregate's internal frame;
* it gives Polars the types a query's schema would: a string literal compared
  with a TIMESTAMP or DATE becomes one, a CAST of a string column to a TIMESTAMP
  or DATE parses it, and ``date_trunc`` and ``TRY_CAST`` of a string to a
  TIMESTAMP or DATE are built here (inside a larger expression, they stand in
  its text as a placeholder column, replaced once Polars built it);
* it refuses what a view cannot compute row by row, naming it: aggregates where
  no aggregate is computed, window functions, subqueries, and functions whose
  value is not a function of the row (``now()``, ``random()``).

>>> import polars as pl, sqlglot
>>> import laminar_polars.sql  # registers the "laminar" dialect
>>> t = Translator(pl.Schema({"price": pl.Float64, "sym": pl.String}))
>>> tree = sqlglot.parse_one("price * 2 > 100 AND SPLIT_PART(SYM, '.', 1) = 'A'",
...                          read="laminar")
>>> frame = pl.DataFrame({"price": [10.0, 60.0], "sym": ["A.X", "A.Y"]})
>>> frame.filter(t(tree)).to_dicts()
[{'price': 60.0, 'sym': 'A.Y'}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.sql.polars_sql import (
    WINDOW_FUNCTIONS,
    build,
    date_trunc,
    is_aggregate,
    nondeterministic,
    placeholders_left,
    substitute,
    try_parse,
)
from laminar_polars.sql.semantics import node_text

__all__ = ["Columns", "Hook", "Translator", "function_name"]

Hook = Callable[[exp.Expr], "pl.Expr | None"]
# The columns of a join's output by the relation they came from: per table
# name or alias of the FROM clause, each of its columns (as the query names
# it) and the output column holding it (``ts``, or ``ts:q`` where the left
# side has a ``ts`` too).
Columns = Mapping[str, Mapping[str, str]]

# Where Polars SQL reads a string literal as the type of what it is compared with.
_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ,
                exp.NullSafeNEQ)
# The SQL type Polars SQL reads a string as, when compared with a column of a type.
_TEMPORAL_SQL = {pl.Datetime: "TIMESTAMP", pl.Date: "DATE"}
# CAST targets Polars SQL reaches from a string column by parsing it (the
# functions it calls when it knows the column is a string).
_PARSED_BY = {exp.DType.TIMESTAMP: "TIMESTAMP", exp.DType.DATETIME: "TIMESTAMP",
              exp.DType.TIMESTAMPNTZ: "TIMESTAMP", exp.DType.DATE: "DATE"}


def function_name(node: exp.Expr) -> str:
    """A function call's name in lower case (``count``, ``tumble``, ``first_value``)."""
    if isinstance(node, exp.Anonymous):
        return node.name.lower()
    if isinstance(node, exp.Func):
        return node.sql_name().lower()
    return node.key.lower()


class Translator:
    """Translate scalar SQL expressions over ``schema`` into Polars expressions.

    ``schema`` is a schema or a function returning one (asked lazily, so a hook
    may add columns while a tree is walked). ``qualifiers`` are the table names
    a column reference may be qualified with; over a join, `Columns`: which
    output column each relation's column is (a column both sides have must
    then be qualified). ``hook(node)`` is asked first about every node and may
    return the expression to use instead: a column, if the node is inside an
    expression Polars SQL builds. ``clause`` names where the expression stands,
    for messages ("WHERE", "an aggregate's argument").
    """

    def __init__(
        self,
        schema: pl.Schema | Callable[[], pl.Schema],
        qualifiers: frozenset[str] | Columns = frozenset(),
        hook: Hook | None = None,
        clause: str = "this expression",
    ) -> None:
        self._schema = schema
        self.qualifiers = qualifiers
        self.hook = hook
        self.clause = clause
        # What stands for an expression built here inside one Polars SQL builds:
        # a placeholder column's name → the expression (`_written`, `_built`).
        self._placeholders: dict[str, pl.Expr] = {}

    @property
    def schema(self) -> pl.Schema:
        return self._schema() if callable(self._schema) else self._schema

    # -- columns ---------------------------------------------------------------

    def column_name(self, node: exp.Column, schema: pl.Schema | None = None) -> str:
        """The schema column ``node`` refers to, or `CatalogError` naming the known ones."""
        schema = self.schema if schema is None else schema
        qualifier = node.table
        if qualifier and (node.args.get("db") or qualifier not in self.qualifiers):
            known = ", ".join(sorted(self.qualifiers)) or "none"
            raise CatalogError(
                f"unknown table {qualifier!r} in column reference {node_text(node)}; "
                f"the query reads: {known}"
            )
        name = node.name
        quoted = bool(node.this.args.get("quoted"))
        if isinstance(self.qualifiers, Mapping):  # a join: resolved by relation
            relations = [qualifier] if qualifier else sorted(self.qualifiers)
            found = {(q, column) for q in relations
                     if (column := _lookup(name, self.qualifiers[q], quoted)) is not None}
            if len({column for _, column in found}) > 1:
                sides = ", ".join(f"{q}.{name}" for q, _ in sorted(found))
                raise CatalogError(f"column {name!r} is ambiguous: it may be {sides}; "
                                   "qualify it with its table name or alias")
            if found:
                return found.pop()[1]
            if qualifier:
                known = ", ".join(self.qualifiers[qualifier]) or "(none)"
                raise CatalogError(f"unknown column {name!r} of {qualifier!r}; its columns: "
                                   f"{known}")
        column = _lookup(name, {c: c for c in schema}, quoted)
        if column is not None:
            return column
        known = ", ".join(schema) or "(none)"
        raise CatalogError(f"unknown column {name!r}; known columns: {known}")

    def dtype(self, expr: pl.Expr) -> pl.DataType | None:
        """The type ``expr`` has over the schema, None if Polars cannot tell."""
        try:
            return pl.LazyFrame(schema=self.schema).select(expr).collect_schema().dtypes()[0]
        except pl.exceptions.PolarsError:
            return None

    # -- the walk ------------------------------------------------------------------

    def __call__(self, node: exp.Expr) -> pl.Expr:
        own = self._own(node)
        if own is not None:
            return own
        return self._built(self._written(node.copy()), node)

    def _built(self, written: exp.Expr, shown: exp.Expr) -> pl.Expr:
        """``written`` built by Polars SQL, its placeholders replaced."""
        built = substitute(build(written, shown), self._placeholders)
        if placeholders_left(built, self._placeholders):
            raise PlanError(
                f"{node_text(shown)} is not supported: it holds an expression Polars' SQL "
                "expression parser cannot build without its argument's type (date_trunc, "
                "TRY_CAST of a string to a TIMESTAMP or DATE); compute that in a subquery "
                "(SELECT ... AS t FROM ...) and use t")
        return built

    def _own(self, node: exp.Expr) -> pl.Expr | None:
        """The expression for ``node`` when the translator, not Polars SQL, makes
        it: what the hook replaces, a column, ``date_trunc``, ``TRY_CAST`` of a
        string to a TIMESTAMP or DATE."""
        if self.hook is not None:
            replaced = self.hook(node)
            if replaced is not None:
                return replaced
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                raise PlanError(f"* is not allowed in {self.clause}")
            return pl.col(self.column_name(node))
        if isinstance(node, (exp.TimestampTrunc, exp.DateTrunc)):
            return self._date_trunc(node)
        if isinstance(node, exp.TryCast) and not isinstance(node.this, exp.Literal) and (
                sql_type := _PARSED_BY.get(node.to.this)) is not None:
            value = self(node.this)
            if self.dtype(value) == pl.String:
                return try_parse(value, sql_type)
        return None

    def _written(self, node: exp.Expr) -> exp.Expr:
        """``node`` (a copy, changed in place) as Polars SQL is to read it: its
        columns named as the schema names them, its literals typed."""
        self._refuse(node)
        for child in list(node.iter_expressions()):
            own = self._own(child)
            if own is None:
                written = self._written(child)
                if written is not child:
                    child.replace(written)
            elif own.meta.is_column():
                child.replace(exp.column(own.meta.output_name(), quoted=True))
            else:  # built here: a placeholder in the text, replaced once Polars built it
                name = f"__lp_built_{len(self._placeholders)}"
                self._placeholders[name] = own
                child.replace(exp.column(name, quoted=True))
        return self._typed(node)

    def _refuse(self, node: exp.Expr) -> None:
        """What a view cannot compute row by row, named."""
        if isinstance(node, exp.Window):
            raise PlanError(f"window functions with OVER are not supported: {node_text(node)}")
        if isinstance(node, exp.In) and node.args.get("query") is not None:
            raise PlanError(f"IN (subquery) is not supported: {node_text(node)}")
        if isinstance(node, (exp.Subquery, exp.Select, exp.Exists)):
            raise PlanError(f"subqueries in expressions are not supported: {node_text(node)}")
        if is_aggregate(node) or isinstance(node, exp.Filter):
            called = node.this if isinstance(node, exp.Filter) else node
            raise PlanError(f"aggregate function {function_name(called)}() is not allowed in "
                            f"{self.clause}: {node_text(node)}")
        if isinstance(node, WINDOW_FUNCTIONS):
            raise PlanError(f"{function_name(node)}() is not allowed in a view: it reads other "
                            f"rows than the current one, or makes more: {node_text(node)}")
        if nondeterministic(node):
            raise PlanError(
                f"{node_text(node)} is not allowed in a view: its value is not a function of "
                "the row, so recomputing the view (a restart replaying the log, Polars in "
                "batch over the same rows) would give other rows; use the event-time column")
        if isinstance(node, exp.Anonymous):
            prefix = function_name(node).split("_")[0]
            if prefix in ("tumble", "hop", "session"):
                raise PlanError(
                    f"{function_name(node)}(...) is only allowed in a query grouped by the same "
                    f"window (GROUP BY {prefix}(...)), not in {self.clause}")

    # -- types Polars SQL would read from a schema ------------------------------------

    def _typed(self, node: exp.Expr) -> exp.Expr:
        """``node`` with the types Polars SQL would take from a schema written in:
        it reads a string literal compared with a TIMESTAMP or DATE as one, and
        parses a string CAST to one, which the text alone does not say."""
        if isinstance(node, _COMPARISONS):
            self._read_as(node.this, node.expression)
            self._read_as(node.expression, node.this)
        elif isinstance(node, exp.Between):
            self._read_as(node.this, node.args["low"])
            self._read_as(node.this, node.args["high"])
        elif isinstance(node, exp.In):
            for item in node.expressions:
                self._read_as(node.this, item)
        elif type(node) is exp.Cast and not isinstance(node.this, exp.Literal):
            parse = _PARSED_BY.get(node.to.this)
            if parse is not None and self._written_type(node.this) == pl.String:
                return exp.Anonymous(this=parse, expressions=[node.this])
        return node

    def _read_as(self, subject: exp.Expr, literal: exp.Expr) -> None:
        """A string ``literal`` compared with a temporal ``subject`` → a CAST to its type."""
        if not (isinstance(literal, exp.Literal) and literal.is_string) or isinstance(
                subject, exp.Literal):
            return
        dtype = self._written_type(subject)
        sql_type = next((name for kind, name in _TEMPORAL_SQL.items()
                         if isinstance(dtype, kind)), None)
        if sql_type is None:
            return
        cast = exp.cast(literal.copy(), sql_type)
        try:
            pl.select(build(cast))
        except (PlanError, pl.exceptions.PolarsError):
            raise PlanError(f"cannot read {literal.name!r} as a {sql_type}") from None
        literal.replace(cast)

    def _written_type(self, node: exp.Expr) -> pl.DataType | None:
        """The type of an already written subtree, None if Polars cannot build it."""
        try:
            return self.dtype(self._built(node, node))
        except PlanError:
            return None

    def _date_trunc(self, node: exp.TimestampTrunc | exp.DateTrunc) -> pl.Expr:
        unit = node.args.get("unit")
        if node.args.get("zone") is not None or not isinstance(unit, (exp.Var, exp.Literal)):
            raise PlanError(f"{node_text(node)}: date_trunc takes a unit given as text and a "
                            "TIMESTAMP or DATE: date_trunc('hour', ts)")
        value = self(node.this)
        return date_trunc(unit.name, value, self.dtype(value), node_text(node))


def _lookup(name: str, columns: Mapping[str, str], quoted: bool) -> str | None:
    """The column ``name`` names among ``columns`` (an unquoted name matches
    one column case-insensitively); None if none."""
    if name in columns:
        return columns[name]
    if not quoted:
        folded = [c for c in columns if c.lower() == name.lower()]
        if len(folded) == 1:
            return columns[folded[0]]
    return None
