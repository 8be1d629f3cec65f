"""Scalar SQL expressions (sqlglot trees) → Polars expressions.

One walk, in :class:`Translator`, turns a sqlglot expression into a ``pl.Expr``
over the columns of a schema; no SQL text is ever handed to Polars. The caller
may pass a ``hook`` that is asked first about every node: the SELECT planner
uses it to replace aggregates, window calls and GROUP BY expressions by
columns of an aggregate's internal frame. What each constant, operator and
function means on its own is in `laminar_polars.sql.semantics`.

Semantics follow Polars SQL (SPEC §3): ``/`` is true division (``7 / 2`` is
``3.5``; dividing by zero gives ``inf``/``NaN``); ``%`` is SQL's truncated
remainder (the sign of the dividend: ``-7 % 2`` is ``-1``; ``% 0`` is null for
integers); AND/OR/NOT use three-valued logic; ``CAST`` is strict
(``TRY_CAST`` gives null instead of failing); non-integer numeric literals are
``Float64``. A string literal compared with a TIMESTAMP or DATE column is read
as a timestamp or date.

>>> import polars as pl, sqlglot
>>> import laminar_polars.sql  # registers the "laminar" dialect
>>> t = Translator(pl.Schema({"price": pl.Float64, "qty": pl.Int64}))
>>> tree = sqlglot.parse_one("price * qty > 100 AND qty % 3 = 2", read="laminar")
>>> frame = pl.DataFrame({"price": [10.0, 50.0], "qty": [20, 4]})
>>> frame.filter(t(tree)).to_dicts()
[{'price': 10.0, 'qty': 20}]
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.sql.semantics import (
    ARITHMETIC,
    COMPARISONS,
    NUMERIC_FUNCTIONS,
    STRING_FUNCTIONS,
    cast_type,
    int_literal,
    interval_us,
    is_string_literal,
    literal_value,
    node_text,
    number_literal,
    parse_date,
    parse_timestamp,
    sql_like,
    temporal_literal,
)

__all__ = ["Columns", "Hook", "Translator", "function_name"]

Hook = Callable[[exp.Expr], "pl.Expr | None"]
# The columns of a join's output by the relation they came from: per table
# name or alias of the FROM clause, each of its columns (as the query names
# it) and the output column holding it (``ts``, or ``ts:q`` where the left
# side has a ``ts`` too).
Columns = Mapping[str, Mapping[str, str]]


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
    then be qualified). ``hook(node)`` is asked first
    about every node and may return the expression to use instead. ``clause``
    names where the expression stands, for messages ("WHERE", "an aggregate's
    argument").
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
        if self.hook is not None:
            replaced = self.hook(node)
            if replaced is not None:
                return replaced
        return self._translate(node)

    def _translate(self, node: exp.Expr) -> pl.Expr:
        kind = type(node)
        if isinstance(node, exp.Paren):
            return self(node.this)
        if isinstance(node, exp.Column):
            if isinstance(node.this, exp.Star):
                raise PlanError(f"* is not allowed in {self.clause}")
            return pl.col(self.column_name(node))
        if isinstance(node, (exp.Literal, exp.Boolean, exp.Null)):
            return pl.lit(literal_value(node))
        if isinstance(node, exp.Neg):
            if isinstance(node.this, exp.Literal) and not node.this.is_string:
                return pl.lit(-number_literal(node.this))
            return -self(node.this)
        if kind in ARITHMETIC:
            return ARITHMETIC[kind](self(node.this), self(node.expression))
        if kind in COMPARISONS:
            left, right = self._comparable(node.this, node.expression)
            return COMPARISONS[kind](left, right)
        if isinstance(node, exp.And):
            return self(node.this) & self(node.expression)
        if isinstance(node, exp.Or):
            return self(node.this) | self(node.expression)
        if isinstance(node, exp.Not):
            return ~self(node.this)
        if isinstance(node, exp.Is):
            return self._is(node)
        if isinstance(node, exp.In):
            return self._in(node)
        if isinstance(node, exp.Between):
            value, low = self._comparable(node.this, node.args["low"])
            _, high = self._comparable(node.this, node.args["high"])
            return (value >= low) & (value <= high)
        if isinstance(node, (exp.Like, exp.ILike)):
            return self._like(node)
        if isinstance(node, exp.Case):
            return self._case(node)
        if isinstance(node, exp.If):
            false = node.args.get("false")
            then = pl.when(self(node.this)).then(self(node.args["true"]))
            return then.otherwise(self(false) if false is not None else pl.lit(None))
        if isinstance(node, exp.Cast):  # also TryCast
            return self._cast(node)
        if isinstance(node, exp.Interval):
            return pl.duration(microseconds=interval_us(node))
        if isinstance(node, exp.Coalesce):
            return pl.coalesce([self(node.this), *map(self, node.expressions)])
        if kind in STRING_FUNCTIONS:
            return STRING_FUNCTIONS[kind](self(node.this))
        if kind in NUMERIC_FUNCTIONS:
            return NUMERIC_FUNCTIONS[kind](self(node.this))
        if isinstance(node, exp.Round):
            return self(node.this).round(int_literal(node.args.get("decimals"), "ROUND's digits"))
        if isinstance(node, exp.DPipe):
            return pl.concat_str([self(node.this), self(node.expression)])
        return self._refuse(node)

    def _refuse(self, node: exp.Expr) -> pl.Expr:
        if isinstance(node, exp.Window):
            raise PlanError(f"window functions with OVER are not supported: {node_text(node)}")
        if isinstance(node, (exp.Subquery, exp.Select)):
            raise PlanError(f"subqueries in expressions are not supported: {node_text(node)}")
        if isinstance(node, exp.AggFunc):
            raise PlanError(f"aggregate function {function_name(node)}() is not allowed in "
                            f"{self.clause}: {node_text(node)}")
        if isinstance(node, exp.Anonymous):
            if function_name(node).split("_")[0] in ("tumble", "hop", "session"):
                raise PlanError(
                    f"{function_name(node)}(...) is only allowed in a query grouped by the same "
                    f"window (GROUP BY {function_name(node).split('_')[0]}(...)), "
                    f"not in {self.clause}"
                )
            raise PlanError(f"unknown function {function_name(node)}")
        if isinstance(node, exp.Func):
            raise PlanError(f"function {function_name(node)} is not supported: {node_text(node)}")
        raise PlanError(f"{node.key.upper()} is not supported: {node_text(node)}")

    # -- pieces ----------------------------------------------------------------------

    def _comparable(self, left: exp.Expr, right: exp.Expr) -> tuple[pl.Expr, pl.Expr]:
        """Both sides; a string literal facing a TIMESTAMP/DATE side becomes one."""
        a, b = self(left), self(right)
        if is_string_literal(right):
            b = _first(temporal_literal(right, self.dtype(a)), b)
        elif is_string_literal(left):
            a = _first(temporal_literal(left, self.dtype(b)), a)
        return a, b

    def _is(self, node: exp.Is) -> pl.Expr:
        value, test = self(node.this), node.expression
        if isinstance(test, exp.Null):
            return value.is_null()
        if isinstance(test, exp.Boolean):
            return (value if test.this else ~value).fill_null(False)
        raise PlanError(f"unsupported IS test: {node_text(node)}")

    def _in(self, node: exp.In) -> pl.Expr:
        if node.args.get("query") is not None or node.args.get("unnest") is not None:
            raise PlanError(f"IN (subquery) is not supported: {node_text(node)}")
        items = node.expressions
        if not items:
            raise PlanError(f"IN needs a list of values: {node_text(node)}")
        if all(isinstance(i, exp.Literal) for i in items) and not any(
            is_string_literal(i) for i in items
        ):
            return self(node.this).is_in([literal_value(i) for i in items])
        tests = [a == b for a, b in (self._comparable(node.this, i) for i in items)]
        result = tests[0]
        for test in tests[1:]:
            result = result | test
        return result

    def _like(self, node: exp.Like | exp.ILike) -> pl.Expr:
        pattern = node.expression
        if not is_string_literal(pattern):
            raise PlanError(f"LIKE needs a string literal pattern: {node_text(node)}")
        value = self(node.this)
        result = sql_like(value, pattern.name, isinstance(node, exp.ILike))
        return ~result if node.args.get("negate") else result

    def _case(self, node: exp.Case) -> pl.Expr:
        subject = node.this
        branches: list[tuple[pl.Expr, pl.Expr]] = []
        for branch in node.args.get("ifs") or []:
            if subject is not None:
                left, right = self._comparable(subject, branch.this)
                condition = left == right
            else:
                condition = self(branch.this)
            branches.append((condition, self(branch.args["true"])))
        if not branches:
            raise PlanError(f"CASE needs at least one WHEN: {node_text(node)}")
        default = node.args.get("default")
        result = self(default) if default is not None else pl.lit(None)
        # Nested from the last WHEN out, each an `otherwise` of the one before: the
        # very expression Polars builds for a when/then/when/then chain.
        for condition, value in reversed(branches):
            result = pl.when(condition).then(value).otherwise(result)
        return result

    def _cast(self, node: exp.Cast) -> pl.Expr:
        target = cast_type(node)
        strict = not isinstance(node, exp.TryCast)
        inner = node.this
        if is_string_literal(inner) and isinstance(target, (pl.Datetime, pl.Date)):
            if isinstance(target, pl.Datetime):
                return pl.lit(parse_timestamp(inner.name), dtype=target)
            return pl.lit(parse_date(inner.name), dtype=target)
        value = self(inner)
        if isinstance(target, (pl.Datetime, pl.Date)) and self.dtype(value) == pl.String:
            # Polars 2 casts strings to temporals only through str.to_*.
            if isinstance(target, pl.Datetime):
                return value.str.to_datetime(time_unit="us", strict=strict)
            return value.str.to_date(strict=strict)
        return value.cast(target, strict=strict)


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


def _first(expr: pl.Expr | None, default: pl.Expr) -> pl.Expr:
    return default if expr is None else expr
