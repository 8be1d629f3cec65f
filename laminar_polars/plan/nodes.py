"""The logical plan: what a materialized view computes, whichever front end wrote it.

Both front ends (``sql`` from a SELECT tree, ``frontend`` from a Polars
LazyFrame) produce these nodes; the engine runs them. Expressions inside the
plan are Polars expressions over the input node's columns, so the plan knows
no SQL text and the engine never re-parses anything.

Time is event time in integer microseconds since the Unix epoch; columns that
hold it are ``pl.Datetime("us")``.

A windowed or keyed aggregate produces an *internal* frame, then filters it with
``having`` and projects it with ``output``. The internal frame has:

* the key columns, by their input names;
* ``WINDOW_START`` and ``WINDOW_END`` (``Datetime("us")``) for a window aggregate;
* one column per `Agg`, named by ``Agg.name``.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import Agg, KeyedAgg, Scan
>>> trades = Scan("trades", pl.Schema({"symbol": pl.String, "qty": pl.Int64,
...                                     "ts": pl.Datetime("us")}), "ts")
>>> view = KeyedAgg(trades, keys=("symbol",), aggs=(Agg("__volume", "sum", pl.col("qty")),),
...                 output=(pl.col("symbol"), pl.col("__volume").alias("volume")))
>>> view.schema
Schema([('symbol', String), ('volume', Int64)])
>>> view.appends_only
False
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import polars as pl

from laminar_polars.errors import PlanError
from laminar_polars.plan.aggregates import AggFunc, aggregate
from laminar_polars.plan.joins import (
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    LookupJoin,
    Union,
    join_kind,
)

__all__ = [
    "WINDOW_END",
    "WINDOW_START",
    "Agg",
    "AggFunc",
    "EmitMode",
    "AsofJoin",
    "EquiJoin",
    "IntervalJoin",
    "Join",
    "KeyedAgg",
    "LookupJoin",
    "Node",
    "RowMap",
    "Scan",
    "Step",
    "WindowAgg",
    "WindowKind",
    "Union",
    "WindowSpec",
    "apply_steps",
    "explain",
    "inputs_of",
]

# What a window aggregate emits (see `WindowAgg`), and the kinds of window (`WindowSpec`).
EmitMode = Literal["on_window_close", "on_update"]
WindowKind = Literal["tumble", "hop", "session"]

WINDOW_START = "__window_start"
WINDOW_END = "__window_end"


@dataclasses.dataclass(frozen=True, eq=False)
class Agg:
    """One aggregate column of the internal frame.

    ``func`` names the function (`laminar_polars.plan.aggregates` says what
    each one means). ``expr`` is evaluated on the input rows (None for ``count_star``).
    ``order`` matters for first/last only: ``'event'`` orders by the input's
    event-time column then arrival (SQL ``first_value``), ``'arrival'`` by
    arrival alone (Polars ``first()`` in a ``group_by``; in ``group_by_dynamic``
    Polars sorts by time, so front ends pass ``'event'`` there).
    ``null_sum`` says what ``sum`` of no non-null values gives: ``'null'`` (SQL)
    or ``'zero'`` (Polars). ``count_null`` makes ``n_unique`` count null as a
    value, as Polars' ``n_unique()`` does (SQL's ``count(DISTINCT)`` does not).
    """

    name: str
    func: AggFunc
    expr: pl.Expr | None = None
    order: Literal["event", "arrival"] = "event"
    null_sum: Literal["null", "zero"] = "null"
    count_null: bool = False

    def __post_init__(self) -> None:
        function = aggregate(self.func)  # raises ValueError for an unknown one
        if (self.expr is None) == function.takes_input:
            wants = "needs an" if self.expr is None else "takes no"
            raise ValueError(f"aggregate {self.func!r} {wants} input expression")


@dataclasses.dataclass(frozen=True)
class WindowSpec:
    """Which windows a row belongs to.

    ``tumble``: ``[s, s + size)`` for ``s`` on the grid ``offset + n * size``.
    ``hop``: every ``[s, s + size)`` containing the row, ``s`` on the grid
    ``offset + n * slide`` (SQL ``hop(ts, slide, size)``; Polars
    ``every=slide, period=size``).
    ``session``: rows of one key closer than ``gap`` apart form one window,
    from the first row's time to the last row's time plus ``gap``.

    ``origin='epoch'`` (SQL) takes every grid window that holds a row.
    ``origin='first_row'`` follows Polars ``group_by_dynamic``: per key, the
    first window starts at ``truncate(earliest row, slide) + offset``, stepped
    back by ``slide`` until it is at or before the earliest row (so the raw
    offset matters, not only ``offset % slide``).
    """

    kind: WindowKind
    size_us: int
    slide_us: int = 0
    offset_us: int = 0
    origin: Literal["epoch", "first_row"] = "epoch"

    def __post_init__(self) -> None:
        # The front ends refuse these with messages in their own words; this is
        # the backstop for any other way a plan is built.
        if self.size_us <= 0:
            what = "session gap" if self.kind == "session" else "window size"
            raise PlanError(f"a {what} must be positive, got {self.size_us}us")
        if self.kind == "tumble" and self.slide_us in (0, self.size_us):
            object.__setattr__(self, "slide_us", self.size_us)
        elif self.kind == "hop" and self.slide_us <= 0:
            raise PlanError(f"a hopping window's slide must be positive, got {self.slide_us}us")
        elif self.kind == "session":
            object.__setattr__(self, "slide_us", 0)

    @property
    def gap_us(self) -> int:
        return self.size_us

    def describe(self) -> str:
        if self.kind == "session":
            return f"session(gap={self.size_us}us)"
        if self.kind == "tumble":
            text = f"tumble(size={self.size_us}us"
        else:
            text = f"hop(slide={self.slide_us}us, size={self.size_us}us"
        if self.offset_us:
            text += f", offset={self.offset_us}us"
        return text + (", origin=first_row)" if self.origin == "first_row" else ")")


# -- row-wise steps ------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Step:
    """One row-wise step: ``kind`` is 'filter' (one predicate), 'select' or
    'with_columns' (named expressions)."""

    kind: Literal["filter", "select", "with_columns"]
    exprs: tuple[pl.Expr, ...]

    def apply(self, frame: pl.LazyFrame) -> pl.LazyFrame:
        if self.kind == "filter":
            return frame.filter(*self.exprs)
        if self.kind == "select":
            return frame.select(*self.exprs)
        return frame.with_columns(*self.exprs)


def apply_steps(frame: pl.LazyFrame, steps: Sequence[Step]) -> pl.LazyFrame:
    for step in steps:
        frame = step.apply(frame)
    return frame


def _schema_after(schema: pl.Schema, steps: Sequence[Step]) -> pl.Schema:
    return apply_steps(pl.LazyFrame(schema=schema), steps).collect_schema()


def _time_after(time_column: str | None, steps: Sequence[Step]) -> str | None:
    """Where the event-time column ends up after row-wise steps: renamed by a
    select, or None once dropped or overwritten by a different value."""
    for step in steps:
        if time_column is None:
            return None
        if step.kind == "filter":
            continue
        plain = [_is_plain(e, time_column) for e in step.exprs]
        names = [e.meta.output_name(raise_if_undetermined=False) for e in step.exprs]
        if step.kind == "select":
            time_column = next((n for n, p in zip(names, plain, strict=True) if p), None)
        elif any(n == time_column and not p for n, p in zip(names, plain, strict=True)):
            time_column = None
    return time_column


def _is_plain(expr: pl.Expr, column: str) -> bool:
    leaf = expr.meta.undo_aliases()
    return leaf.meta.is_column() and leaf.meta.output_name() == column


# -- nodes -----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True, eq=False)
class Scan:
    """Rows of a source or of another materialized view.

    ``time_column`` is the event-time column (the source's watermark column,
    or the upstream view's output time column), None if there is none.
    ``appends_only`` is False when the upstream emits upserts (a keyed
    aggregate or an ``EMIT ON UPDATE`` view). ``table`` marks a registered
    table: static rows, which only a `LookupJoin` reads.
    """

    name: str
    schema: pl.Schema
    time_column: str | None = None
    appends_only: bool = True
    table: bool = False

    @property
    def inputs(self) -> tuple[Node, ...]:
        return ()


@dataclasses.dataclass(frozen=True, eq=False)
class RowMap:
    """Row-wise steps (filter, select, with_columns) applied to each micro-batch."""

    input: Node
    steps: tuple[Step, ...]

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)

    @property
    def schema(self) -> pl.Schema:
        return _schema_after(self.input.schema, self.steps)

    @property
    def time_column(self) -> str | None:
        return _time_after(self.input.time_column, self.steps)

    @property
    def appends_only(self) -> bool:
        return self.input.appends_only


class _Aggregate:
    """What window and keyed aggregates share: one input, and an internal frame
    (keys, window bounds for windows, one column per `Agg`) projected by ``output``."""

    input: Node
    keys: tuple[str, ...]
    aggs: tuple[Agg, ...]
    output: tuple[pl.Expr, ...]

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.input,)

    @property
    def internal_schema(self) -> pl.Schema:
        source = self.input.schema
        columns: dict[str, pl.DataType] = {k: source[k] for k in self.keys}
        if isinstance(self, WindowAgg):
            columns[WINDOW_START] = pl.Datetime("us")
            columns[WINDOW_END] = pl.Datetime("us")
        # Input types only where they decide the result (a count is a count
        # whatever it counts), as one probe of the input expressions.
        typed = [a.expr.alias(str(i)) for i, a in enumerate(self.aggs)
                 if a.expr is not None and aggregate(a.func).result is None]
        inputs = pl.LazyFrame(schema=source).select(typed).collect_schema() if typed else {}
        for i, agg in enumerate(self.aggs):
            columns[agg.name] = aggregate(agg.func).result_type(inputs.get(str(i)))
        return pl.Schema(columns)

    @property
    def schema(self) -> pl.Schema:
        return pl.LazyFrame(schema=self.internal_schema).select(self.output).collect_schema()


@dataclasses.dataclass(frozen=True, eq=False)
class WindowAgg(_Aggregate):
    """Aggregates per key and window.

    ``emit``: 'on_window_close' (one final row per key and window, once the
    watermark passes the window's end) or 'on_update' (the changed windows'
    current rows after every micro-batch). ``time_output`` names the output
    column holding the window start or end (``time_output_is``), which becomes
    the event time of views stacked on this one.
    """

    input: Node
    keys: tuple[str, ...]
    window: WindowSpec
    aggs: tuple[Agg, ...]
    output: tuple[pl.Expr, ...]
    having: pl.Expr | None = None
    emit: EmitMode = "on_window_close"
    time_output: str | None = None
    time_output_is: Literal["start", "end"] = "start"

    @property
    def input_time_column(self) -> str:
        time_column = self.input.time_column
        if time_column is None:
            raise ValueError("a window aggregate needs an input with an event-time column")
        return time_column

    @property
    def time_column(self) -> str | None:
        if self.emit != "on_window_close":
            return None
        if self.time_output_is == "start" and self.window.kind == "session":
            return None  # a session's start says nothing about later sessions
        return self.time_output

    @property
    def time_lag_us(self) -> int:
        """How far the output time column may trail the input watermark."""
        if self.time_output_is == "end":
            return 0
        return self.window.size_us

    @property
    def appends_only(self) -> bool:
        return self.emit == "on_window_close"


@dataclasses.dataclass(frozen=True, eq=False)
class KeyedAgg(_Aggregate):
    """A continuous aggregate: one row per key, updated in place (upserts)."""

    input: Node
    keys: tuple[str, ...]
    aggs: tuple[Agg, ...]
    output: tuple[pl.Expr, ...]
    having: pl.Expr | None = None

    @property
    def time_column(self) -> str | None:
        return None

    @property
    def appends_only(self) -> bool:
        return False


Node = (Scan | RowMap | WindowAgg | KeyedAgg | AsofJoin | IntervalJoin | EquiJoin | LookupJoin
        | Union)
Join = AsofJoin | IntervalJoin | EquiJoin | LookupJoin


def inputs_of(node: Node) -> list[str]:
    """Names of the sources, views and tables a plan reads."""
    if isinstance(node, Scan):
        return [node.name]
    names: list[str] = []
    for child in node.inputs:
        names += [n for n in inputs_of(child) if n not in names]
    if isinstance(node, LookupJoin) and node.table_name is not None:
        names += [] if node.table_name in names else [node.table_name]
    return names


def explain(node: Node, indent: int = 0) -> str:
    """The plan as an indented tree, one node per line.

    >>> import polars as pl
    >>> scan = Scan("trades", pl.Schema({"price": pl.Float64}), None)
    >>> print(explain(RowMap(scan, (Step("filter", (pl.col("price") > 0,)),))))
    RowMap filter([(col("price")) > (dyn int: 0)])
      Scan trades [price: Float64]
    """
    pad = "  " * indent
    if isinstance(node, Scan):
        columns = ", ".join(f"{n}: {t}" for n, t in node.schema.items())
        time = f" time={node.time_column}" if node.time_column else ""
        line = f"{pad}Scan {node.name} [{columns}]{time}"
    elif isinstance(node, RowMap):
        steps = "; ".join(f"{s.kind}({', '.join(map(str, s.exprs))})" for s in node.steps)
        line = f"{pad}RowMap {steps}"
    elif isinstance(node, WindowAgg):
        line = (f"{pad}WindowAgg {node.window.describe()} keys={list(node.keys)} "
                f"aggs={_aggs_text(node.aggs)} emit={node.emit}")
        if node.having is not None:
            line += f" having={node.having}"
    elif isinstance(node, KeyedAgg):
        line = f"{pad}KeyedAgg keys={list(node.keys)} aggs={_aggs_text(node.aggs)} emit=on_update"
        if node.having is not None:
            line += f" having={node.having}"
    elif isinstance(node, Union):
        line = f"{pad}Union all"
    else:
        line = pad + _join_text(node)
    children = [explain(child, indent + 1) for child in node.inputs]
    return "\n".join([line, *children])


def _join_text(node: Join) -> str:
    """One line for a join node: its kind, keys, time condition and options."""
    if isinstance(node, AsofJoin):
        op = ">=" if node.allow_exact_matches else ">"
        text = (f"AsofJoin {node.how} on {node.left_on} {op} {node.right_on} "
                f"by {list(node.left_by)}={list(node.right_by)}")
        if node.tolerance_us is not None:
            text += f" tolerance={node.tolerance_us}us"
        return text
    if isinstance(node, IntervalJoin):
        low, high = ("<" if s else "<=" for s in (node.lower_strict, node.upper_strict))
        text = (f"IntervalJoin {node.how} keys {list(node.left_keys)}={list(node.right_keys)} "
                f"{node.left_on}{node.lower_us:+d}us {low} {node.right_on} {high} "
                f"{node.left_on}{node.upper_us:+d}us")
    elif isinstance(node, LookupJoin):
        table = node.table_name or "<frame>"
        text = (f"LookupJoin {node.how} table={table} "
                f"on {list(node.left_on)}={list(node.right_on)}")
    else:
        text = (f"EquiJoin {node.how} on {list(node.left_on)}={list(node.right_on)} "
                f"({join_kind(node)})")
        if node.state_ttl_us is not None:
            text += f" state_ttl={node.state_ttl_us}us"
    if node.residual:
        text += f" where {', '.join(map(str, node.residual))}"
    return text


def _aggs_text(aggs: Sequence[Agg]) -> str:
    return "[" + ", ".join(
        f"{a.name}={a.func}({'' if a.expr is None else a.expr})" for a in aggs
    ) + "]"
