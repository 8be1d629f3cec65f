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
from laminar_polars.plan.nodes import Agg, EmitMode, KeyedAgg, Node, RowMap, Scan, WindowAgg

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
    if isinstance(node, Scan | RowMap):
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
