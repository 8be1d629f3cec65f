"""A LazyFrame's joins and concatenations → the join nodes of the plan.

`laminar_polars.frontend.translate` hands every `Join`, `JoinWhere` and
`Concat` of the neutral tree here, with a function that translates their
inputs. What each becomes (so that the view equals Polars in batch on the
same rows, late rows dropped):

* ``join_asof`` (``strategy='backward'``, with or without ``by``) between
  streams → `AsofJoin` with Polars' left-join semantics (a left row without
  a match keeps nulls); ``forward`` and ``nearest`` are refused (a match is
  not final until rows past it arrive, and then only by chance);
* ``join(how='inner' | 'left')`` between streams → `EquiJoin`: a window
  join when the keys equate both event-time columns (a LEFT join only
  then), otherwise unbounded (or bounded by the view's ``state_ttl``);
* ``join(how='inner' | 'left')`` with a static DataFrame (``df.lazy()``) or a
  registered table (``db.stream(table)``) on the right → `LookupJoin`;
* ``join_where`` between streams → `IntervalJoin` when its predicates bound
  the right event time from both sides relative to the left one
  (``pl.col("ts_right") >= pl.col("ts") - timedelta(...)``; ``is_between``
  too), its key equalities as keys and other predicates filtering the pairs;
  with key equalities and no bounds → an inner `EquiJoin`;
* ``pl.concat`` of streams with the same columns → `Union`.

Refused with `PlanError` naming the step: ``how`` 'right', 'full', 'semi',
'anti', 'cross'; join keys that are expressions (add them with
``with_columns`` first); a static frame on the left or alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import polars as pl

from laminar_polars.errors import PlanError
from laminar_polars.frontend import polars_ir as ir
from laminar_polars.plan import (
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    JoinHow,
    LookupJoin,
    Node,
    Scan,
    Union,
)

__all__ = ["plan_concat", "plan_join", "plan_join_where"]

LEFT, RIGHT = 0, 1
_FLIP = {">=": "<=", ">": "<", "<=": ">=", "<": ">", "=": "="}

Translate = Callable[[ir.IRNode], Node]


class _Key(NamedTuple):
    """``left == right``: a left and a right column."""

    left: str
    right: str


class _Bound(NamedTuple):
    """``right time - left time <op> value`` (microseconds)."""

    op: str
    value: int


def _columns(keys: tuple[ir.IRExpr, ...], step: str) -> tuple[str, ...]:
    names = []
    for key in keys:
        column = key.column
        if column is None:
            raise PlanError(f"{step}: join keys must be columns; add {key.name!r} with "
                            "with_columns first")
        names.append(column)
    return tuple(names)


def _is_table(node: Node) -> bool:
    return isinstance(node, Scan) and node.table


def plan_join(tree: ir.Join, translate: Translate, state_ttl_us: int | None) -> Node:
    """A ``join`` or ``join_asof`` step."""
    if tree.how == "asof":
        return _asof(tree, translate)
    step = f"join(how={tree.how!r})"
    if tree.how not in ("inner", "left"):
        what = {"cross": "a cross join pairs every row with every other, without end",
                "right": "its unmatched rows are the right side's; swap the frames and use "
                         "how='left'",
                "full": "the right side's unmatched rows are never final"}.get(
            tree.how, "only how='inner' and how='left' are maintained")
        raise PlanError(f"{step} cannot be maintained incrementally by a materialized view: "
                        f"{what}")
    how: JoinHow = "left" if tree.how == "left" else "inner"
    if isinstance(tree.left, ir.StaticFrame):
        raise PlanError(f"{step}: the static DataFrame must be the right frame: "
                        "stream.join(frame, ...)")
    left = translate(tree.left)
    left_on, right_on = _columns(tree.left_on, step), _columns(tree.right_on, step)
    if isinstance(tree.right, ir.StaticFrame):
        return LookupJoin(left, None, tree.right.frame, left_on, right_on, how, tree.suffix,
                          tree.coalesce, tree.nulls_equal)
    right = translate(tree.right)
    if _is_table(left):
        raise PlanError(f"{step}: the table must be the right frame: stream.join(table, ...)")
    if _is_table(right):
        assert isinstance(right, Scan)
        return LookupJoin(left, right, None, left_on, right_on, how, tree.suffix,
                          tree.coalesce, tree.nulls_equal)
    join = EquiJoin(left, right, left_on, right_on, how, tree.suffix, tree.coalesce,
                    tree.nulls_equal)
    if join.windowed or state_ttl_us is None:
        return join
    return dataclasses.replace(join, state_ttl_us=state_ttl_us)


def _asof(tree: ir.Join, translate: Translate) -> AsofJoin:
    options = tree.asof
    assert options is not None
    if options.strategy != "backward":
        raise PlanError(f"join_asof(strategy={options.strategy!r}) cannot be maintained: a "
                        "match would not be final until later rows arrive; use "
                        "strategy='backward'")
    if isinstance(tree.right, ir.StaticFrame) or isinstance(tree.left, ir.StaticFrame):
        raise PlanError("join_asof with a static DataFrame is not supported: both frames "
                        "must be streams (db.stream(...))")
    (left_on,), (right_on,) = (_columns(tree.left_on, "join_asof"),
                               _columns(tree.right_on, "join_asof"))
    tolerance = options.tolerance
    if tolerance is not None and (not isinstance(tolerance, int) or isinstance(tolerance, bool)):
        raise PlanError(f"join_asof tolerance={tolerance!r}: use a duration ('5s', a "
                        "timedelta) or integer microseconds")
    left, right = translate(tree.left), translate(tree.right)
    if _is_table(left) or _is_table(right):
        raise PlanError("join_asof with a table is not supported: both frames must be streams")
    return AsofJoin(left, right, left_on, right_on, options.left_by, options.right_by,
                    tolerance, options.allow_exact_matches, "left", tree.suffix, tree.coalesce)


def plan_join_where(tree: ir.JoinWhere, translate: Translate,
                    state_ttl_us: int | None) -> Node:
    """A ``join_where`` step (or a filter over a cross join)."""
    step = "join_where"
    if isinstance(tree.left, ir.StaticFrame) or isinstance(tree.right, ir.StaticFrame):
        raise PlanError(f"{step} with a static DataFrame is not supported: use join(...) "
                        "for a lookup")
    left, right = translate(tree.left), translate(tree.right)
    if _is_table(left) or _is_table(right):
        raise PlanError(f"{step} with a table is not supported: use join(...) for a lookup")
    # Output column -> (side, input column): the left's keep their names, a right
    # column the left has gets the suffix.
    sides: dict[str, tuple[int, str]] = {c: (LEFT, c) for c in left.schema}
    for column in right.schema:
        sides[column + tree.suffix if column in left.schema else column] = (RIGHT, column)
    times = (left.time_column, right.time_column)
    keys: list[_Key] = []
    bounds: list[_Bound] = []
    residual: list[pl.Expr] = []
    for part in tree.conjuncts:
        found = _classify(part.comparison, sides, times)
        if isinstance(found, _Key):
            keys.append(found)
        elif isinstance(found, _Bound):
            bounds.append(found)
        else:
            residual.append(part.expr.to_polars(named=False))
    left_on = tuple(k for k, _ in keys)
    right_on = tuple(k for _, k in keys)
    if bounds and not all(op == "=" and value == 0 for op, value in bounds):
        low = max(((v, op == ">") for op, v in bounds if op in (">=", ">", "=")), default=None)
        high = min(((v, op == "<") for op, v in bounds if op in ("<=", "<", "=")),
                   key=lambda b: (b[0], not b[1]), default=None)
        if low is None or high is None:
            raise PlanError(f"{step}: an interval join needs both bounds on the right frame's "
                            "event time relative to the left's (e.g. ts_right >= ts - 1s and "
                            "ts_right <= ts + 1s); with one, a row waits for matches forever")
        left_time, right_time = times
        assert left_time is not None and right_time is not None
        return IntervalJoin(left, right, left_time, right_time, low[0], high[0], left_on,
                            right_on, low[1], high[1], tuple(residual), "inner", tree.suffix)
    if bounds:
        left_time, right_time = times
        assert left_time is not None and right_time is not None
        left_on, right_on = (*left_on, left_time), (*right_on, right_time)
    if not left_on:
        raise PlanError(f"{step} needs a key equality (pl.col('k') == pl.col('k_right')) or "
                        "both bounds on the event times: otherwise every row pairs with every "
                        "other, without end")
    join = EquiJoin(left, right, left_on, right_on, "inner", tree.suffix, False, False,
                    tuple(residual))
    if join.windowed or state_ttl_us is None:
        return join
    return dataclasses.replace(join, state_ttl_us=state_ttl_us)


def _classify(comparison: ir.Comparison | None, sides: dict[str, tuple[int, str]],
              times: tuple[str | None, str | None]) -> _Key | _Bound | None:
    """A predicate part as a key, a bound, or None (a filter of the pairs)."""
    if comparison is None:
        return None
    terms: dict[tuple[int, str], int] = {}
    for sign, (columns, _) in ((1, comparison.left), (-1, comparison.right)):
        for column, coefficient in columns:
            if column not in sides:
                return None
            key = sides[column]
            terms[key] = terms.get(key, 0) + sign * coefficient
    terms = {k: v for k, v in terms.items() if v}
    constant = comparison.left[1] - comparison.right[1]
    left_time, right_time = times
    op = comparison.op
    time_pair = {(LEFT, left_time), (RIGHT, right_time)}
    if set(terms) == time_pair and left_time is not None and right_time is not None:
        sign = terms[(RIGHT, right_time)]
        if sign in (1, -1) and terms[(LEFT, left_time)] == -sign:
            return _Bound(op, -constant) if sign == 1 else _Bound(_FLIP[op], constant)
        return None
    if op == "=" and not constant and len(terms) == 2 and sorted(terms.values()) == [-1, 1]:
        (side_a, col_a), (side_b, col_b) = sorted(terms)
        if (side_a, side_b) == (LEFT, RIGHT):
            return _Key(col_a, col_b)
    return None


def plan_concat(tree: ir.Concat, translate: Translate) -> Union:
    """``pl.concat`` of streams."""
    if any(isinstance(part, ir.StaticFrame) for part in tree.inputs):
        raise PlanError("concat with a static DataFrame cannot be maintained: only db.stream() "
                        "frames can feed a view")
    return Union(tuple(translate(part) for part in tree.inputs))
