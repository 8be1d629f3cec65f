"""FROM and its JOIN clauses → the join nodes of the plan (SPEC §3, Joins).

`plan_from` reads the relation in FROM (a source, a view, a registered table
or a subquery) and joins the relation of each JOIN clause to it, left to
right. The ON condition is split at its ANDs, and each part is

* an equality of an expression over each side's columns → a key (one that
  is not a column is computed first into a hidden column of its side; a
  table's key must be a column); of both sides' event-time columns → the key
  of a window join;
* a comparison of both sides' event-time columns, give or take INTERVALs →
  a time bound: ``t.ts >= q.ts`` and ``t.ts - q.ts <= INTERVAL '5' SECOND``
  (ASOF), ``b.ts BETWEEN a.ts - INTERVAL 'x' AND a.ts + INTERVAL 'y'``
  (interval);
* a condition on one side's columns alone → a filter of that side's rows
  before the join (on a LEFT join's left side it would not drop rows:
  refused);
* anything else → a filter of the pairs (inner joins only).

Then the join is: ``ASOF [LEFT] JOIN`` → `AsofJoin` (keys, ``t.ts >= q.ts`` or
``>``, an optional staleness bound); a registered table on the right →
`LookupJoin` (keys only); time bounds → `IntervalJoin` (both bounds needed);
keys alone → `EquiJoin` (a window join if the keys equate both event times;
otherwise the view's ``state_ttl``, if given, bounds its state). RIGHT and
FULL joins, CROSS joins, USING and NATURAL are refused, as is a LEFT join of
two streams on keys alone (its unmatched rows are never final).

Output columns: the left's, then the right's; a right column whose name the
left has gets ``:<alias>`` (as Polars SQL names it): ``SELECT *`` over ``t
JOIN q`` gives ``ts`` and ``ts:q``. Over a join, a column both sides have
must be qualified.

Examples
--------
>>> import polars as pl, sqlglot
>>> import laminar_polars.sql  # registers the "laminar" dialect
>>> from laminar_polars.plan import Scan
>>> schema = pl.Schema({"sym": pl.String, "px": pl.Float64, "ts": pl.Datetime("us")})
>>> scans = {"t": Scan("t", schema, "ts"), "q": Scan("q", schema, "ts")}
>>> query = sqlglot.parse_one(
...     "SELECT * FROM t ASOF JOIN q ON t.sym = q.sym AND t.ts >= q.ts", read="laminar")
>>> joined = plan_from(query, scans.__getitem__, lambda sub: None, None)
>>> type(joined.node).__name__, list(joined.node.schema)
('AsofJoin', ['sym', 'px', 'ts', 'sym:q', 'px:q', 'ts:q'])
>>> joined.columns["q"]["ts"]
'ts:q'
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import polars as pl
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import (
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    JoinHow,
    LookupJoin,
    Node,
    Scan,
    Step,
)
from laminar_polars.sql.expressions import Translator
from laminar_polars.sql.row_wise import add_row_steps, condition
from laminar_polars.sql.semantics import interval_us, node_text

__all__ = ["Relation", "plan_from"]

LEFT, RIGHT = 0, 1
_BY = "__asof_by"  # the right keys of an ASOF join, copied: Polars drops its `by` columns
_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "="}
_COMPARISONS: dict[type[exp.Expr], str] = {
    exp.GTE: ">=", exp.GT: ">", exp.LTE: "<=", exp.LT: "<", exp.EQ: "="}


@dataclasses.dataclass(frozen=True)
class Relation:
    """What FROM reads: its plan ``node``, and ``columns``: per table name or
    alias, its columns and the ``node`` column holding each. ``joined`` says
    whether a JOIN made it; ``label`` names it in messages."""

    node: Node
    columns: dict[str, dict[str, str]]
    label: str
    joined: bool = False


def plan_from(query: exp.Select, relation: Callable[[str], Scan],
              plan_query: Callable[[exp.Expr], Node], state_ttl_us: int | None) -> Relation:
    """The relation FROM and its JOINs make. ``relation(name)`` is a source's,
    view's or table's `Scan`; ``plan_query`` plans a subquery;
    ``state_ttl_us`` bounds the state of equi-joins the watermarks do not free."""
    from_ = query.args.get("from_")
    if from_ is None:
        raise PlanError("a materialized view needs FROM <source or view>")
    current = _relation(from_.this, relation, plan_query)
    for join in query.args.get("joins") or []:
        right = _relation(join.this, relation, plan_query)
        current = _Join(current, right, join, state_ttl_us).plan()
    return current


def _relation(table: exp.Expr, relation: Callable[[str], Scan],
              plan_query: Callable[[exp.Expr], Node]) -> Relation:
    alias = table.args.get("alias")
    if alias is not None and alias.args.get("columns"):
        raise PlanError(f"column aliases in FROM are not supported: {node_text(table)}")
    if isinstance(table, exp.Subquery):
        node = plan_query(table.this)
        names = {table.alias: {c: c for c in node.schema}} if table.alias else {}
        return Relation(node, names, "the subquery in FROM")
    if not isinstance(table, exp.Table) or not isinstance(table.this, exp.Identifier):
        raise PlanError(f"FROM must name one source or view, got {node_text(table)}")
    if table.args.get("db") or table.args.get("catalog"):
        raise PlanError(f"qualified names are not supported: {node_text(table)}")
    scan = relation(table.name)
    return Relation(scan, {table.alias or table.name: {c: c for c in scan.schema}},
                    repr(table.name))


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _conjuncts(node: exp.Expr) -> list[exp.Expr]:
    node = _unparen(node)
    if isinstance(node, exp.And):
        return _conjuncts(node.this) + _conjuncts(node.expression)
    return [node]


# A linear form over the two sides' columns: coefficient per (side, column), and a
# constant in microseconds (INTERVALs).
_Linear = tuple[dict[tuple[int, str], int], int]


class _Join:
    """Plans one JOIN clause: ``left`` (what FROM read so far) with ``right``."""

    def __init__(self, left: Relation, right: Relation, join: exp.Join,
                 state_ttl_us: int | None) -> None:
        self.left, self.right, self.join = left, right, join
        self.state_ttl_us = state_ttl_us
        self.text = node_text(join)
        self.asof = (join.args.get("method") or "").upper() == "ASOF"
        self.side = (join.args.get("side") or "").upper()
        self.how: JoinHow = "left" if self.side == "LEFT" else "inner"
        self.times = (left.node.time_column, right.node.time_column)

    # -- the clause --------------------------------------------------------------------
    def plan(self) -> Relation:
        self._check_clause()
        (alias,) = self.right.columns
        found_keys: list[tuple[exp.Expr, exp.Expr]] = []
        bounds: list[tuple[str, int]] = []  # (op, c): right time - left time op c
        filters: tuple[list[exp.Expr], list[exp.Expr]] = ([], [])
        residual: list[exp.Expr] = []
        for part in _conjuncts(self.join.args["on"]):
            sides = {side for side, _ in self._refs(part)}
            if len(sides) == 1:
                filters[sides.pop()].append(part)
            elif not sides:
                residual.append(part)
            elif (key := self._key(part)) is not None:
                found_keys.append(key)
            elif (found := self._bounds(part)) is not None:
                bounds += found
            else:
                residual.append(part)
        right_table = isinstance(self.right.node, Scan) and self.right.node.table
        if filters[LEFT] and self.how == "left":
            raise PlanError(f"{self.text}: a LEFT JOIN's ON condition on the left side alone "
                            f"({', '.join(map(node_text, filters[LEFT]))}) would not drop "
                            "left rows, only their matches; move it to WHERE to drop them")
        if right_table and filters[RIGHT]:
            residual += filters[RIGHT]  # a table is not a stream to filter before the join
            filters[RIGHT].clear()
        left_node = self._filtered(LEFT, filters[LEFT])
        right_node = self._filtered(RIGHT, filters[RIGHT])
        left_node, right_node, keys = self._keyed(left_node, right_node, found_keys,
                                                  right_table)
        right_names = {c: c if c not in left_node.schema else f"{c}:{alias}"
                       for c in right_node.schema}
        columns = {**self.left.columns, alias: {c: right_names[c0]
                                                for c, c0 in self.right.columns[alias].items()}}
        joined = pl.Schema({**left_node.schema,
                            **{right_names[c]: t for c, t in right_node.schema.items()}})
        scope = Translator(joined, columns, clause="the ON condition")
        predicates = tuple(condition(scope, part, "ON") for part in residual)
        if residual and self.how == "left":
            raise PlanError(f"{self.text}: a LEFT JOIN's ON condition takes key equalities "
                            "and a time bound only, not "
                            f"{', '.join(map(node_text, residual))}: it would decide which "
                            "rows match, not which are kept")
        suffix = f":{alias}"
        node: Node
        if self.asof:
            node = self._asof(left_node, right_node, keys, bounds, predicates, suffix)
        elif right_table:
            assert isinstance(self.right.node, Scan)
            if bounds:
                raise PlanError(f"{self.text}: a lookup join (with table "
                                f"{self.right.node.name!r}) matches on keys only, not on time")
            self._need_keys(keys, "a lookup join")
            node = LookupJoin(left_node, self.right.node, None,
                              *self._key_columns(keys, left_node, right_node), how=self.how,
                              suffix=suffix, coalesce=False, residual=predicates)
        elif bounds and not all(op == "=" and c == 0 for op, c in bounds):
            node = self._interval(left_node, right_node, keys, bounds, predicates, suffix)
        else:
            if bounds:  # the event times equal: a window join's key
                left_time, right_time = self.times
                assert left_time is not None and right_time is not None
                keys.append((left_time, right_time))
            self._need_keys(keys, "a join of two streams")
            left_on, right_on = self._key_columns(keys, left_node, right_node)
            equi = EquiJoin(left_node, right_node, left_on, right_on, how=self.how,
                            suffix=suffix, coalesce=False, residual=predicates)
            node = equi if equi.windowed or self.state_ttl_us is None else dataclasses.replace(
                equi, state_ttl_us=self.state_ttl_us)
        expected = [*left_node.schema, *right_names.values()]
        if list(node.schema) != expected:  # pragma: no cover - a planning bug
            raise PlanError(f"{self.text}: the join's columns {list(node.schema)} are not the "
                            f"expected {expected}")
        return Relation(node, columns, "the join", joined=True)

    def _check_clause(self) -> None:
        join, text = self.join, self.text
        method = (join.args.get("method") or "").upper()
        kind = (join.args.get("kind") or "").upper()
        if method == "NATURAL" or join.args.get("using"):
            raise PlanError(f"{text}: NATURAL and USING joins are not supported; write the "
                            "condition with ON")
        if kind in ("SEMI", "ANTI"):
            raise PlanError(f"{text}: {kind} joins are not supported")
        if kind == "CROSS" or join.args.get("on") is None:
            raise PlanError(f"{text}: a join needs ON with a key equality or a time bound: "
                            "a cross join of streams would pair every row with every other, "
                            "without end")
        if self.side in ("RIGHT", "FULL"):
            raise PlanError(f"{text}: {self.side} joins are not supported: the rows kept "
                            "unmatched are the right side's; swap the inputs and use LEFT JOIN")
        if not self.right.columns or not self.left.columns:
            raise PlanError(f"{text}: a subquery in a join needs an alias: (SELECT ...) AS name")
        shared = set(self.left.columns) & set(self.right.columns)
        if shared:
            raise PlanError(f"{text}: {sorted(shared)[0]!r} names two relations of FROM; give "
                            "one an alias")
        for relation in (self.left, self.right):
            node = relation.node
            if isinstance(node, Scan) and node.table and relation is self.left:
                raise PlanError(f"{text}: table {node.name!r} is static: put the stream first "
                                f"(FROM <stream> JOIN {node.name})")

    # -- the parts of ON ---------------------------------------------------------------
    def _refs(self, node: exp.Expr) -> list[tuple[int, str]]:
        return [self._resolve(column) for column in node.find_all(exp.Column)]

    def _resolve(self, column: exp.Column) -> tuple[int, str]:
        """(side, its column) of a column reference in ON."""
        found: list[tuple[int, str]] = []
        for side, relation in ((LEFT, self.left), (RIGHT, self.right)):
            scope = Translator(relation.node.schema, relation.columns)
            if column.table and column.table not in relation.columns:
                continue
            try:
                found.append((side, scope.column_name(column)))
            except CatalogError:
                if column.table:
                    raise
        if not found:
            qualifiers = sorted({*self.left.columns, *self.right.columns})
            if column.table:
                raise CatalogError(f"unknown table {column.table!r} in column reference "
                                   f"{node_text(column)}; the query reads: "
                                   f"{', '.join(qualifiers)}")
            raise CatalogError(f"unknown column {column.name!r} in {self.text}")
        if len(found) > 1:
            raise CatalogError(f"column {column.name!r} is ambiguous in {self.text}: both "
                               "sides have it; qualify it with its table name or alias")
        return found[0]

    def _key(self, part: exp.Expr) -> tuple[exp.Expr, exp.Expr] | None:
        """(left operand, right operand) of an equality of an expression over
        each side's columns (not of both event-time columns: a time bound)."""
        if not isinstance(part, exp.EQ):
            return None
        a, b = _unparen(part.this), _unparen(part.expression)
        side_a = {side for side, _ in self._refs(a)}
        side_b = {side for side, _ in self._refs(b)}
        if {frozenset(side_a), frozenset(side_b)} != {frozenset({LEFT}), frozenset({RIGHT})}:
            return None
        left, right = (a, b) if side_a == {LEFT} else (b, a)
        if isinstance(left, exp.Column) and isinstance(right, exp.Column) and (
                self._resolve(left)[1], self._resolve(right)[1]) == self.times:
            return None
        return left, right

    def _keyed(self, left: Node, right: Node, keys: list[tuple[exp.Expr, exp.Expr]],
               table: bool) -> tuple[Node, Node, list[tuple[str, str]]]:
        """The key columns of both sides: a column as it is, an expression
        computed first into a hidden column of its side."""
        names: list[tuple[str, str]] = []
        computed: tuple[list[pl.Expr], list[pl.Expr]] = ([], [])
        for i, pair in enumerate(keys):
            columns = []
            for side, operand in zip((LEFT, RIGHT), pair, strict=True):
                if isinstance(operand, exp.Column):
                    columns.append(self._resolve(operand)[1])
                    continue
                if table and side == RIGHT:
                    raise PlanError(f"{self.text}: a table's join key must be one of its "
                                    f"columns, not {node_text(operand)}")
                relation = (self.left, self.right)[side]
                scope = Translator(relation.node.schema, relation.columns, clause="a join key")
                hidden = f"__join_key{i}"
                computed[side].append(scope(operand).alias(hidden))
                columns.append(hidden)
            names.append((columns[0], columns[1]))
        if computed[LEFT]:
            left = add_row_steps(left, [Step("with_columns", tuple(computed[LEFT]))])
        if computed[RIGHT]:
            right = add_row_steps(right, [Step("with_columns", tuple(computed[RIGHT]))])
        return left, right, names

    def _bounds(self, part: exp.Expr) -> list[tuple[str, int]] | None:
        """``part`` as bounds on right time - left time, if it compares the two."""
        if isinstance(part, exp.Between):
            low = self._compare(part.this, ">=", part.args["low"])
            high = self._compare(part.this, "<=", part.args["high"])
            return None if low is None or high is None else [low, high]
        op = _COMPARISONS.get(type(part))
        if op is None:
            return None
        bound = self._compare(part.this, op, part.expression)
        return None if bound is None else [bound]

    def _compare(self, a: exp.Expr, op: str, b: exp.Expr) -> tuple[str, int] | None:
        first, second = self._linear(a), self._linear(b)
        if first is None or second is None:
            return None
        terms = dict(first[0])
        for key, coefficient in second[0].items():
            terms[key] = terms.get(key, 0) - coefficient
        terms = {k: v for k, v in terms.items() if v}
        constant = first[1] - second[1]  # a - b op 0: terms + constant op 0
        left_time, right_time = self.times
        if left_time is None or right_time is None:
            return None
        sign = terms.get((RIGHT, right_time))
        if set(terms) != {(LEFT, left_time), (RIGHT, right_time)} or sign not in (1, -1) \
                or terms[(LEFT, left_time)] != -sign:
            return None
        # sign * (right - left) + constant op 0
        return (op, -constant) if sign == 1 else (_FLIP[op], constant)

    def _linear(self, node: exp.Expr) -> _Linear | None:
        node = _unparen(node)
        if isinstance(node, exp.Column):
            return {self._resolve(node): 1}, 0
        if isinstance(node, exp.Interval):
            try:
                return {}, interval_us(node)
            except PlanError:
                return None
        if isinstance(node, exp.Neg):
            inner = self._linear(node.this)
            return None if inner is None else ({k: -v for k, v in inner[0].items()}, -inner[1])
        if isinstance(node, exp.Add | exp.Sub):
            a, b = self._linear(node.this), self._linear(node.expression)
            if a is None or b is None:
                return None
            sign = 1 if isinstance(node, exp.Add) else -1
            terms = dict(a[0])
            for key, coefficient in b[0].items():
                terms[key] = terms.get(key, 0) + sign * coefficient
            return terms, a[1] + sign * b[1]
        return None

    # -- building ----------------------------------------------------------------------
    def _filtered(self, side: int, parts: list[exp.Expr]) -> Node:
        relation = (self.left, self.right)[side]
        if not parts:
            return relation.node
        scope = Translator(relation.node.schema, relation.columns, clause="the ON condition")
        steps = [Step("filter", (condition(scope, part, "ON"),)) for part in parts]
        return add_row_steps(relation.node, steps)

    def _need_keys(self, keys: list[tuple[str, str]], what: str) -> None:
        if not keys:
            raise PlanError(f"{self.text}: {what} needs a key equality in ON "
                            "(left.column = right.column)")

    def _key_columns(self, keys: list[tuple[str, str]], left_node: Node, right_node: Node
                     ) -> tuple[tuple[str, ...], tuple[str, ...]]:
        left_schema, right_schema = left_node.schema, right_node.schema
        for left, right in keys:
            left_type, right_type = left_schema[left], right_schema[right]
            if left_type != right_type:
                raise PlanError(f"{self.text}: join keys {left!r} ({left_type}) and {right!r} "
                                f"({right_type}) have different types; CAST one of them")
        return tuple(k for k, _ in keys), tuple(k for _, k in keys)

    def _asof(self, left: Node, right: Node, keys: list[tuple[str, str]],
              bounds: list[tuple[str, int]], residual: tuple[pl.Expr, ...],
              suffix: str) -> AsofJoin:
        usage = ("ON t.key = q.key AND t.ts >= q.ts [AND t.ts - q.ts <= INTERVAL '...']")
        for relation, time in zip((self.left, self.right), self.times, strict=True):
            if time is None:
                raise PlanError(f"{self.text}: an ASOF join needs event time on both inputs, "
                                f"and {relation.label} has none (a source's watermark "
                                "column, or a view's window column)")
        if residual:
            raise PlanError(f"{self.text}: an ASOF join's ON takes key equalities, the time "
                            f"order and a staleness bound only ({usage})")
        order = [b for b in bounds if b[0] in ("<=", "<")]
        stale = [b for b in bounds if b[0] in (">=", ">")]
        if len(order) != 1 or order[0][1] != 0 or len(stale) > 1 or len(bounds) != len(
                order) + len(stale):
            raise PlanError(f"{self.text}: an ASOF join needs its left event time at or after "
                            f"the right one, once, and at most one staleness bound: {usage}")
        tolerance = None
        if stale:
            op, value = stale[0]
            tolerance = -value - (1 if op == ">" else 0)
            if tolerance < 0:
                raise PlanError(f"{self.text}: an ASOF join's staleness bound must not be "
                                "negative")
        left_by, right_by = self._key_columns(keys, left, right)
        hidden = tuple(f"{_BY}{i}" for i in range(len(right_by)))
        steps = []
        if right_by:  # (a null key matches nothing in Polars' by-groups, as in SQL)
            steps = [Step("with_columns", tuple(pl.col(k).alias(h)
                                                for k, h in zip(right_by, hidden, strict=True)))]
        left_time, right_time = self.times
        assert left_time is not None and right_time is not None
        return AsofJoin(left, add_row_steps(right, steps), left_time, right_time, left_by,
                        hidden, tolerance, order[0][0] == "<=", self.how, suffix,
                        coalesce=False)

    def _interval(self, left: Node, right: Node, keys: list[tuple[str, str]],
                  bounds: list[tuple[str, int]], residual: tuple[pl.Expr, ...],
                  suffix: str) -> IntervalJoin:
        # The tightest of each: a greater lower bound (strict beats inclusive at the
        # same value), a smaller upper one.
        lows = [(value, op == ">") for op, value in bounds if op in (">=", ">", "=")]
        highs = [(value, op == "<") for op, value in bounds if op in ("<=", "<", "=")]
        low = max(lows, default=None)
        high = min(highs, key=lambda bound: (bound[0], not bound[1]), default=None)
        if low is None or high is None:
            raise PlanError(f"{self.text}: an interval join needs both bounds on the right "
                            "event time, e.g. b.ts BETWEEN a.ts - INTERVAL '1' SECOND AND a.ts "
                            "+ INTERVAL '1' SECOND; with one, a row would wait for matches "
                            "forever")
        left_keys, right_keys = self._key_columns(keys, left, right)
        left_time, right_time = self.times
        assert left_time is not None and right_time is not None
        return IntervalJoin(left, right, left_time, right_time, low[0], high[0], left_keys,
                            right_keys, low[1], high[1], residual, self.how, suffix)
