"""From a user's LazyFrame to the logical plan (`laminar_polars.plan`).

`polars_ir` reads the plan Polars built; this module decides what it means for
a materialized view, and refuses with `PlanError` what the engine cannot
maintain so that the view always equals Polars run in batch on the same rows
(late rows dropped):

* ``filter``, ``select``, ``with_columns``, ``rename``, ``drop``, ``cast`` with
  element-wise expressions become a `RowMap` of `Step` objects;
* ``group_by_dynamic`` becomes a `WindowAgg` with ``origin='first_row'``
  (per key, Polars starts windows at ``truncate(earliest row, every) + offset``,
  stepped back by ``every`` until it is at or before the earliest row);
* ``group_by(...).agg(...)`` becomes a `KeyedAgg` (a continuous aggregate);
* aggregates: ``pl.len()``, ``count``, ``sum``, ``min``, ``max``, ``mean``,
  ``first``, ``last``, ``n_unique``, over element-wise expressions, and
  element-wise expressions over them (kept as hidden `Agg` columns);
* row-wise steps after an aggregate become a `RowMap` on top of it;
* ``join_asof``, ``join``, ``join_where`` and ``pl.concat`` become join nodes
  and `Union` (`laminar_polars.frontend.joins` says which and when).

The finished plan goes through `laminar_polars.plan.validate` (emit modes,
event time, updating inputs), in a LazyFrame's words.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import Scan
>>> trades = Scan("trades", pl.Schema({"symbol": pl.String, "price": pl.Float64,
...                                    "ts": pl.Datetime("us")}), "ts")
>>> frame = stream(trades)
>>> bars = (frame.group_by_dynamic("ts", every="1m", group_by="symbol")
...         .agg(pl.col("price").max().alias("high"), pl.len().alias("trades")))
>>> plan = plan_lazyframe(bars, {"trades": trades}.__getitem__, emit=None)
>>> plan.keys, plan.window.describe(), plan.emit
(('symbol',), 'tumble(size=60000000us, origin=first_row)', 'on_window_close')
>>> [(agg.name, agg.func, agg.order) for agg in plan.aggs]
[('__high', 'max', 'event'), ('__trades', 'count_star', 'event')]
>>> plan.schema == bars.collect_schema()
True
>>> plan_lazyframe(frame.sort("ts"), {"trades": trades}.__getitem__, emit=None)
Traceback (most recent call last):
...
laminar_polars.errors.PlanError: sort cannot be maintained incrementally by a materialized view
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import polars as pl

from laminar_polars.errors import PlanError
from laminar_polars.frontend import polars_ir as ir
from laminar_polars.frontend.joins import plan_concat, plan_join, plan_join_where
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    EquiJoin,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    WindowSpec,
    Wording,
    aggregate,
    emit_mode,
    validate,
)

__all__ = ["plan_lazyframe", "stream"]


@dataclasses.dataclass(frozen=True)
class _FrameWording(Wording):
    """The validation pass's messages in a LazyFrame's words."""

    windowed: str = "a windowed aggregate (group_by_dynamic)"
    grouped: str = "a group_by"

    def window(self, node: WindowAgg) -> str:
        return f"group_by_dynamic on {node.time_output!r}"

    def aggregate(self, agg: Agg) -> str:
        return f"{aggregate(agg.func).polars_name}()"

    def input(self, node: WindowAgg | KeyedAgg) -> str:
        if isinstance(node.input, WindowAgg):
            return "the group_by_dynamic below it"
        if isinstance(node.input, KeyedAgg):
            return "the group_by below it"
        return super().input(node)


_WORDING = _FrameWording()


def stream(scan: Scan) -> pl.LazyFrame:
    """The placeholder LazyFrame for a source or view: its schema, no rows.

    >>> import polars as pl
    >>> from laminar_polars.plan import Scan
    >>> stream(Scan("quotes", pl.Schema({"bid": pl.Float64}))).collect_schema()
    Schema([('bid', Float64)])
    """
    return ir.placeholder(scan.name, scan.schema)


def plan_lazyframe(frame: pl.LazyFrame, relation: Callable[[str], Scan],
                   emit: str | None, state_ttl_us: int | None = None) -> Node:
    """The logical plan of ``frame``, built on `stream` placeholders.

    ``relation(name)`` resolves each placeholder to its current `Scan`.
    ``emit`` (None for the default) applies to the outermost aggregate:
    ``group_by_dynamic`` defaults to ``'on_window_close'`` and also takes
    ``'on_update'``; a ``group_by`` takes only ``'on_update'``.
    ``state_ttl_us`` bounds the state of a join of two streams on keys alone.
    """
    if not isinstance(frame, pl.LazyFrame):
        raise PlanError(f"a materialized view needs a pl.LazyFrame built on db.stream(...), "
                        f"not {type(frame).__name__}")
    tree = ir.read_plan(frame)
    translator = _Translator(relation, _outermost_group_by(tree), emit, state_ttl_us)
    node = translator.node(tree)
    if state_ttl_us is not None and not translator.bounded:
        raise PlanError("state_ttl bounds the state of a join of two streams on keys alone; "
                        "this view has none (window, interval and asof joins are freed by the "
                        "watermarks)")
    return validate(node, emit, _WORDING)


def _outermost_group_by(tree: ir.IRNode) -> ir.GroupBy | None:
    node = tree
    while isinstance(node, ir.Select | ir.WithColumns | ir.Filter | ir.GroupBy):
        if isinstance(node, ir.GroupBy):
            return node
        node = node.input
    return None  # a scan, or a join or concat below which emit does not reach


class _Translator:
    def __init__(self, relation: Callable[[str], Scan], outermost: ir.GroupBy | None,
                 emit: str | None, state_ttl_us: int | None = None):
        self.relation = relation
        self.outermost = outermost
        self.emit = emit
        self.state_ttl_us = state_ttl_us
        self.bounded = False  # a join took the state TTL

    def node(self, tree: ir.IRNode) -> Node:
        if isinstance(tree, ir.SourceScan):
            return self._scan(tree)
        node: Node
        if isinstance(tree, ir.GroupBy):
            node = self._group_by(tree)
        elif isinstance(tree, ir.Join):
            node = plan_join(tree, self.node, self.state_ttl_us)
        elif isinstance(tree, ir.JoinWhere):
            node = plan_join_where(tree, self.node, self.state_ttl_us)
        elif isinstance(tree, ir.Concat):
            node = plan_concat(tree, self.node)
        elif isinstance(tree, ir.StaticFrame):
            raise PlanError("a DataFrame scan (only db.stream() frames can feed a view; a "
                            "static DataFrame only as the right frame of a join)")
        else:
            node = self._row_map(tree)
        if isinstance(node, EquiJoin) and node.state_ttl_us is not None:
            self.bounded = True
        _check_schema(node, tree.schema)
        return node

    def _scan(self, tree: ir.SourceScan) -> Scan:
        scan = self.relation(tree.name)
        if dict(scan.schema) != dict(tree.schema):
            raise PlanError(f"{tree.name!r} changed since its frame was made "
                            f"(schema {dict(tree.schema)} is now {dict(scan.schema)}); "
                            f"call db.stream({tree.name!r}) again")
        return scan

    # -- row-wise steps ------------------------------------------------------------

    def _row_map(self, tree: ir.IRNode) -> Node:
        steps: list[Step] = []
        while isinstance(tree, ir.Select | ir.WithColumns | ir.Filter):
            steps.append(_step(tree))
            tree = tree.input
        steps.reverse()
        return _extend(self.node(tree), *steps)

    # -- aggregates ------------------------------------------------------------------

    def _group_by(self, tree: ir.GroupBy) -> WindowAgg | KeyedAgg:
        source = self.node(tree.input)
        dynamic = tree.dynamic
        if dynamic is not None:
            window, label = _window(dynamic, source)
        # keys: input columns; an expression key is computed first into a hidden column
        keys: list[str] = []
        key_outputs: list[pl.Expr] = []
        computed: list[pl.Expr] = []
        taken = set(source.schema) | {WINDOW_START, WINDOW_END}
        for key in tree.keys:
            column = key.column
            if column is None:
                column = _fresh(f"__key_{key.name}", taken)
                computed.append(key.to_polars(named=False).alias(column))
            keys.append(column)
            taken.add(column)
            key_outputs.append(pl.col(column) if column == key.name
                               else pl.col(column).alias(key.name))
        if computed:
            source = _extend(source, Step("with_columns", tuple(computed)))

        aggs: list[Agg] = []
        order: Literal["event", "arrival"] = "event" if dynamic is not None else "arrival"

        def collect(out_name: str) -> ir.OnAgg:
            def on_agg(call: ir.AggCall) -> pl.Expr:
                for agg in aggs:
                    if agg.func == call.func and _same(agg.expr, call.arg):
                        return pl.col(agg.name)
                name = _fresh(f"__{out_name}", taken)
                taken.add(name)
                aggs.append(Agg(name, call.func, call.arg, order=order,
                                null_sum="zero", count_null=call.func == "n_unique"))
                return pl.col(name)
            return on_agg

        agg_outputs = [agg.to_polars(collect(agg.name)) for agg in tree.aggs]

        if dynamic is None:
            return KeyedAgg(source, tuple(keys), tuple(aggs), tuple(key_outputs + agg_outputs))
        boundaries: list[pl.Expr] = []
        if dynamic.include_boundaries:
            boundaries = [pl.col(WINDOW_START).alias("_lower_boundary"),
                          pl.col(WINDOW_END).alias("_upper_boundary")]
        index = pl.col(WINDOW_START if label == "start" else WINDOW_END)
        output = (*key_outputs, *boundaries, index.alias(dynamic.index_column), *agg_outputs)
        # The view's emit mode applies to the outermost aggregate only.
        emit = emit_mode(self.emit) if tree is self.outermost else "on_window_close"
        return WindowAgg(source, tuple(keys), window, tuple(aggs), output, emit=emit,
                         time_output=dynamic.index_column, time_output_is=label)


def _step(tree: ir.Select | ir.WithColumns | ir.Filter) -> Step:
    if isinstance(tree, ir.Filter):
        return Step("filter", (tree.predicate.to_polars(named=False),))
    exprs = tuple(e.to_polars() for e in tree.exprs)
    if isinstance(tree, ir.Select):
        if not any(e.meta.root_names() for e in exprs):
            raise PlanError("a select that reads no column (only literals) makes one row per "
                            "batch, not per input row; use with_columns")
        return Step("select", exprs)
    return Step("with_columns", exprs)


def _extend(node: Node, *steps: Step) -> Node:
    if not steps:
        return node
    if isinstance(node, RowMap):
        return RowMap(node.input, node.steps + steps)
    return RowMap(node, steps)


def _same(a: pl.Expr | None, b: pl.Expr | None) -> bool:
    if a is None or b is None:
        return a is b
    return a.meta.eq(b)


def _fresh(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    return candidate


def _check_schema(node: Node, expected: pl.Schema) -> None:
    """The plan's schema must be the one Polars reports for the same step."""
    try:
        schema = node.schema
    except pl.exceptions.PolarsError as exc:  # pragma: no cover - a translation bug
        raise PlanError(f"could not type the translated plan: {exc}") from exc
    if dict(schema) != dict(expected):
        raise PlanError(f"the view's schema {dict(schema)} would differ from Polars' "
                        f"{dict(expected)}")


# -- windows -----------------------------------------------------------------------

_UNITS = "use fixed units: ns, us, ms, s, m, h, d, w"


def _window(
    dynamic: ir.DynamicOptions, source: Node
) -> tuple[WindowSpec, Literal["start", "end"]]:
    """The window of a ``group_by_dynamic``, and whether its label is the start or end."""
    index = dynamic.index_column
    time_column = source.time_column
    # An input without event time is the validation pass's to refuse.
    if time_column is not None and index != time_column:
        raise PlanError(f"group_by_dynamic index column {index!r} is not the input's "
                        f"event-time column {time_column!r}")
    every = _micros("every", dynamic.every)
    period = _micros("period", dynamic.period)
    offset = _micros("offset", dynamic.offset, signed=True)
    if source.schema[index] != pl.Datetime("us"):
        raise PlanError(f"group_by_dynamic index column {index!r} has type "
                        f"{source.schema[index]}, not Datetime('us')")
    if dynamic.closed != "left":
        raise PlanError(f"group_by_dynamic closed={dynamic.closed!r} is not supported; "
                        "windows include their start, not their end (closed='left')")
    if dynamic.label not in ("left", "right"):
        raise PlanError(f"group_by_dynamic label={dynamic.label!r} is not supported; "
                        "use label='left' or 'right'")
    if dynamic.start_by != "window":
        raise PlanError(f"group_by_dynamic start_by={dynamic.start_by!r} is not supported; "
                        "use start_by='window'")
    spec = WindowSpec("tumble" if period == every else "hop", size_us=period, slide_us=every,
                      offset_us=offset, origin="first_row")
    return spec, "start" if dynamic.label == "left" else "end"


def _micros(what: str, duration: ir.Duration, signed: bool = False) -> int:
    if duration.integer:
        raise PlanError(f"group_by_dynamic {what} is an integer index duration ('i'); "
                        "windows are over the event-time column")
    nanoseconds = duration.fixed_ns
    if nanoseconds is None:
        raise PlanError(f"group_by_dynamic {what} uses a calendar duration (mo, q, y), "
                        f"whose length varies; {_UNITS}")
    if nanoseconds % 1000:
        raise PlanError(f"group_by_dynamic {what} is not a whole number of microseconds")
    if nanoseconds <= 0 and not signed:
        raise PlanError(f"group_by_dynamic {what} must be positive, "
                        f"got {_duration_text(nanoseconds)}")
    return nanoseconds // 1000


def _duration_text(nanoseconds: int) -> str:
    """A fixed duration as Polars writes one: ``-2s``, ``500ms``, ``0s``."""
    if nanoseconds == 0:
        return "0s"
    for unit, size in (("d", 86_400 * 10**9), ("h", 3_600 * 10**9), ("m", 60 * 10**9),
                       ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if nanoseconds % size == 0:
            return f"{nanoseconds // size}{unit}"
    return f"{nanoseconds}ns"

