"""The one validation pass: what the engine cannot maintain, refused before it runs.

Both front ends build a plan, then hand it to `validate` with the view's
requested emit mode; a hand-built plan goes through it too. What a plan alone
decides is checked here, once; what needs the query's text (which column a
SQL ``tumble()`` names, GROUP BY syntax, a ``group_by_dynamic`` index
column) stays in the front end. The engine assumes a validated plan.

The rules, each refused with `PlanError`:

1. **Emit modes.** The requested mode is ``'on_window_close'``,
   ``'on_update'`` or None (the default), and so is every window's. It applies
   to the outermost aggregate (below row-wise steps): ``'on_window_close'``
   needs that to be a window, since a keyed aggregate only emits updates.
2. **Updating inputs.** No aggregate over rows that are updated in place
   (a keyed aggregate's or an ``'on_update'`` window's).
3. **Event time.** A window needs an input with an event-time column, and so
   does first/last by event order.
4. **Sessions** emit on window close only: a late row can merge two sessions
   already emitted.
5. **Joins and UNION ALL** read inputs that append (a pair once emitted is
   never taken back), and tables only as a lookup join's table. ASOF and
   interval joins match on both inputs' event-time columns. A LEFT join is
   maintained only where the watermarks tell when a left row's matches are
   final (ASOF, interval, window and lookup joins); conditions beyond the
   keys and the time bound are for inner joins. An equi-join whose state the
   watermarks do not free may be bounded by a state TTL, which needs event
   time on both sides. UNION ALL's inputs have the same columns.

Messages use a front end's words (`Wording`): SQL speaks of ``EMIT ON
UPDATE`` and ``tumble(...)``, a LazyFrame of ``emit='on_update'`` and
``group_by_dynamic``; the default words speak of plan nodes.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import Agg, KeyedAgg, Scan, validate
>>> totals = Scan("totals", pl.Schema({"symbol": pl.String, "n": pl.UInt32}),
...               appends_only=False)
>>> validate(KeyedAgg(totals, (), (Agg("rows", "count_star"),), (pl.col("rows"),)))
Traceback (most recent call last):
...
laminar_polars.errors.PlanError: cannot aggregate over 'totals': its rows are updated in place (a continuous aggregate or an emit='on_update' view); only row-wise queries may read it
"""  # noqa: E501

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from laminar_polars.errors import PlanError
from laminar_polars.plan.aggregates import aggregate
from laminar_polars.plan.joins import join_kind
from laminar_polars.plan.nodes import (
    Agg,
    AsofJoin,
    EmitMode,
    EquiJoin,
    IntervalJoin,
    Join,
    KeyedAgg,
    LookupJoin,
    Node,
    RowMap,
    Scan,
    Union,
    WindowAgg,
)

__all__ = ["EMIT_MODES", "Wording", "emit_mode", "validate"]

EMIT_MODES: tuple[EmitMode, ...] = ("on_window_close", "on_update")

_EVENT_TIME_HINT = ("(a source's watermark column, or a view's window column, "
                    "kept through row-wise steps)")


@dataclasses.dataclass(frozen=True)
class Wording:
    """How a front end names things in the pass's messages.

    Parameters
    ----------
    on_window_close, on_update
        The emit modes as its users write them.
    windowed
        Where a window comes from (after "needs").
    grouped
        An aggregate without a window (before "without a window").
    row_wise_ignores_emit
        Whether a plan whose top is row-wise ignores the requested emit mode
        (SQL: EMIT is a clause of the SELECT's own aggregation) instead of
        applying it to the aggregate below the row-wise steps (LazyFrames).
    inputs
        An aggregate node's input as its users named it (SQL: ``'trades'``,
        ``the subquery in FROM``); by default a scanned source or view by its
        name, anything else as "its input".
    """

    on_window_close: str = "emit='on_window_close'"
    on_update: str = "emit='on_update'"
    windowed: str = "a window aggregate (WindowAgg)"
    grouped: str = "a keyed aggregate (KeyedAgg)"
    row_wise_ignores_emit: bool = False
    inputs: Mapping[Node, str] = dataclasses.field(default_factory=dict)

    def window(self, node: WindowAgg) -> str:
        """A window aggregate, as the subject of a sentence."""
        return f"a {node.window.kind} window"

    def aggregate(self, agg: Agg) -> str:
        """An aggregate function, as the subject of a sentence."""
        return agg.func

    def input(self, node: WindowAgg | KeyedAgg) -> str:
        """The input of an aggregate node."""
        named = self.inputs.get(node)
        if named is not None:
            return named
        return repr(node.input.name) if isinstance(node.input, Scan) else "its input"


def validate(plan: Node, emit: str | None = None, wording: Wording | None = None) -> Node:
    """Check ``plan`` against the rules above; return it unchanged.

    ``emit`` is the view's requested emit mode (None for the default).
    ``wording`` gives the messages a front end's words (default: plan nodes').

    Raises
    ------
    PlanError
        For the first rule broken, inner nodes before the nodes above them
        (after the requested emit mode).
    """
    words = wording or Wording()
    _check_emit(plan, emit, words)
    _check_node(plan, words)
    return plan


def emit_mode(requested: str | None) -> EmitMode:
    """The mode a front end gives the window aggregate a view's ``emit`` applies to.

    The requested mode itself; 'on_window_close' (the default) for None, and
    for an unknown mode, which `validate` refuses anyway when given the same
    ``requested``.

    >>> emit_mode("on_update"), emit_mode(None)
    ('on_update', 'on_window_close')
    """
    return next((mode for mode in EMIT_MODES if mode == requested), "on_window_close")


def _check_emit(plan: Node, emit: str | None, words: Wording) -> None:
    if emit is None:
        return
    if emit not in EMIT_MODES:
        raise PlanError(f"unknown emit mode {emit!r}; expected 'on_window_close' or 'on_update'")
    if emit != "on_window_close":
        return
    if isinstance(plan, RowMap) and words.row_wise_ignores_emit:
        return
    target = plan
    while isinstance(target, RowMap):
        target = target.input
    if isinstance(target, WindowAgg):
        return
    message = f"{words.on_window_close} needs {words.windowed}"
    if isinstance(target, KeyedAgg):
        message += (f"; {words.grouped} without a window is a continuous aggregate, whose rows "
                    f"are updated in place ({words.on_update})")
    raise PlanError(message)


def _check_node(node: Node, words: Wording) -> None:
    for child in node.inputs:
        _check_node(child, words)
    if isinstance(node, Scan):
        return
    for child in node.inputs:
        if isinstance(child, Scan) and child.table:
            raise PlanError(f"table {child.name!r} holds static rows: a view reads it only "
                            "through a join with a stream (a lookup join), or db.query does")
    if isinstance(node, RowMap):
        return
    if isinstance(node, Union):
        _check_union(node)
        return
    if isinstance(node, AsofJoin | IntervalJoin | EquiJoin | LookupJoin):
        _check_join(node)
        return
    if isinstance(node, WindowAgg) and node.emit not in EMIT_MODES:
        raise PlanError(f"unknown emit mode {node.emit!r}; "
                        "expected 'on_window_close' or 'on_update'")
    if not node.input.appends_only:
        raise PlanError(f"cannot aggregate over {words.input(node)}: its rows are updated in "
                        f"place (a continuous aggregate or an {words.on_update} view); only "
                        "row-wise queries may read it")
    if node.input.time_column is None:
        if isinstance(node, WindowAgg):
            raise PlanError(f"{words.window(node)} needs an event-time column, and "
                            f"{words.input(node)} has none {_EVENT_TIME_HINT}")
        for agg in node.aggs:
            if aggregate(agg.func).orders_by_event_time(agg):
                raise PlanError(f"{words.aggregate(agg)} orders by event time, so it needs an "
                                f"event-time column, and {words.input(node)} has none "
                                f"{_EVENT_TIME_HINT}")
    if isinstance(node, WindowAgg) and node.window.kind == "session" and node.emit == "on_update":
        raise PlanError(f"{words.on_update} is not supported for session windows: a row can "
                        f"merge two sessions already emitted; use {words.on_window_close}")


_UPDATING = "its rows are updated in place (a continuous aggregate or an emit='on_update' view)"


def _side(node: Node, side: str) -> str:
    return f"{node.name!r}" if isinstance(node, Scan) else f"its {side} input"


def _check_join(node: Join) -> None:
    kind = join_kind(node)
    for side, child in zip(("left", "right"), node.inputs, strict=False):
        if not child.appends_only:
            raise PlanError(f"cannot join {_side(child, side)}: {_UPDATING}; a join's inputs "
                            "must append")
    residual = () if isinstance(node, AsofJoin) else node.residual
    if residual and node.how != "inner":
        raise PlanError(f"a LEFT {kind} join takes only key equalities"
                        f"{'' if kind in ('lookup', 'equi', 'window') else ' and its time bound'}"
                        " as its condition: another condition decides which rows match, not "
                        "which are kept (inner joins take any)")
    if isinstance(node, LookupJoin):
        if len(node.left_on) != len(node.right_on) or not node.left_on:
            raise PlanError("a lookup join needs as many table keys as stream keys, at least one")
        return
    if isinstance(node, AsofJoin | IntervalJoin):
        left_time, right_time = node.left.time_column, node.right.time_column
        for side, child, time, on in (("left", node.left, left_time, node.left_on),
                                      ("right", node.right, right_time, node.right_on)):
            if time is None:
                raise PlanError(f"an {kind} join needs event time on both inputs, and "
                                f"{_side(child, side)} has none {_EVENT_TIME_HINT}")
            if on != time:
                raise PlanError(f"an {kind} join matches on the inputs' event-time columns: "
                                f"that of {_side(child, side)} is {time!r}, not {on!r}")
    if isinstance(node, AsofJoin):
        if len(node.left_by) != len(node.right_by):
            raise PlanError("an asof join needs as many right 'by' columns as left ones")
        if node.tolerance_us is not None and node.tolerance_us < 0:
            raise PlanError(f"an asof join's tolerance must not be negative, got "
                            f"{node.tolerance_us}us")
        return
    if isinstance(node, IntervalJoin):
        if len(node.left_keys) != len(node.right_keys):
            raise PlanError("an interval join needs as many right keys as left ones")
        empty = node.lower_us > node.upper_us or (
            node.lower_us == node.upper_us and (node.lower_strict or node.upper_strict))
        if empty:
            raise PlanError(f"an interval join's bounds hold no time: the right time must be "
                            f"from the left time {node.lower_us:+d}us to {node.upper_us:+d}us")
        return
    if len(node.left_on) != len(node.right_on) or not node.left_on:
        raise PlanError("an equi-join needs as many right keys as left ones, at least one")
    if node.windowed:
        if node.state_ttl_us is not None:
            raise PlanError("state_ttl is for a join the watermarks do not free; this window "
                            "join (its keys equate both inputs' event times) is freed by them")
        return
    if node.how != "inner":
        raise PlanError("a LEFT join of two streams on keys alone cannot be maintained: a left "
                        "row's match may arrive at any time, so emitting it unmatched would "
                        "need a retraction later. Equate both inputs' event-time columns too "
                        "(a window join), bound the times (an interval join), or use an inner "
                        "join")
    if node.state_ttl_us is not None:
        if node.state_ttl_us <= 0:
            raise PlanError(f"state_ttl must be positive, got {node.state_ttl_us}us")
        for side, child in (("left", node.left), ("right", node.right)):
            if child.time_column is None:
                raise PlanError(f"state_ttl frees a join's rows by event time, and "
                                f"{_side(child, side)} has none {_EVENT_TIME_HINT}")


def _check_union(node: Union) -> None:
    if len(node.inputs) < 2:
        raise PlanError("UNION ALL needs at least two inputs")
    first = node.inputs[0].schema
    for position, child in enumerate(node.inputs, 1):
        if not child.appends_only:
            raise PlanError(f"cannot UNION ALL {_side(child, f'#{position}')}: {_UPDATING}")
        schema = child.schema
        if list(schema.items()) != list(first.items()):
            raise PlanError(f"UNION ALL needs inputs with the same columns: input {position} has "
                            f"{dict(schema)}, input 1 {dict(first)}")
