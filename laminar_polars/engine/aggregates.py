"""Partial aggregates: the mechanics of running a tuple of `Agg` over micro-batches.

An aggregate is kept as a *partial* per group: a few columns that two partials
can be merged from (sums, counts, extremes, the first value together with its
event time). The engine computes partials of each micro-batch in one Polars
``group_by``, merges them into its state in another, and finalizes a group
when it emits it. Distinct counts cannot be merged from numbers, so their
partial is the set of distinct ``(group, value)`` rows, kept beside the state.

What each function's partial, merge and final value *are* is the aggregate
registry's (`laminar_polars.plan.aggregates`); this module decides which
columns go into which Polars call: input rows are first *projected* (the
group columns, the event time as ``TIME`` in integer microseconds, one column
per distinct aggregate input, so each input expression is evaluated once per
row), event order may be packed into one integer (``ORDER``), partial frames
are stacked and merged, distinct rows counted and joined.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import Agg
>>> calc = Aggregates((Agg("n", "count_star"), Agg("hi", "max", pl.col("p"))), "ts")
>>> rows = pl.DataFrame({"k": ["a", "a", "b"], "p": [1.0, 3.0, 2.0], "ts": [1, 2, 3]})
>>> rows = rows.with_columns(pl.col("ts").cast(pl.Datetime("us")))
>>> one = calc.partials(calc.project(rows.lazy(), ["k"]), ["k"])
>>> two = calc.partials(calc.project(rows.lazy(), ["k"]), ["k"])
>>> state = calc.merge([one, two], ["k"])
>>> calc.finalize(state.lazy(), ["k"]).sort("k").collect()
shape: (2, 3)
┌─────┬─────┬─────┐
│ k   ┆ n   ┆ hi  │
│ --- ┆ --- ┆ --- │
│ str ┆ u32 ┆ f64 │
╞═════╪═════╪═════╡
│ a   ┆ 4   ┆ 3.0 │
│ b   ┆ 2   ┆ 2.0 │
└─────┴─────┴─────┘
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import NamedTuple

import polars as pl

from laminar_polars.plan import Agg, aggregate

__all__ = ["TIME", "Aggregates", "Packing", "collect", "time_span"]

TIME = "__time"

# Event order within one micro-batch as one integer: time since the batch's
# earliest row, shifted left past the row's position, plus the position. For
# a batch of a million rows that leaves 2**43 us (101 days) of time.
ORDER = "__order"
_POSITION = "__position"
_VALUE = "__value"  # the value column of a distinct count's rows


# Below this many input rows the in-memory engine wins (its start-up cost is
# a quarter of the streaming engine's); above it the streaming engine's
# parallel hash aggregation is 1.5-2x faster (measured on 2 cores).
STREAMING_ROWS = 1 << 15


def collect(frame: pl.LazyFrame, rows: int = 0) -> pl.DataFrame:
    """Run ``frame`` on the engine that suits ``rows`` input rows."""
    return frame.collect(engine="streaming" if rows >= STREAMING_ROWS else "in-memory")


_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_MICROSECOND = dt.timedelta(microseconds=1)


def _micros(value: dt.datetime) -> int:
    return (value - (_EPOCH if value.tzinfo is None else _EPOCH_UTC)) // _MICROSECOND


def time_span(column: pl.Series) -> tuple[int, int] | None:
    """The column's earliest and latest time in microseconds (floored), None
    if it has no value. Series.min/max cost ~1 us; any Polars conversion of
    the column first costs ~25 us, on every micro-batch."""
    low, high = column.min(), column.max()
    if low is None or high is None:
        return None
    if isinstance(low, dt.datetime) and isinstance(high, dt.datetime):
        return _micros(low), _micros(high)
    micros = column.dt.epoch("us")
    return _int(micros.min()), _int(micros.max())


def _int(value: object) -> int:
    """An int64 column's min or max (Polars types it as any literal)."""
    assert isinstance(value, int)
    return value


class Packing(NamedTuple):
    """How event order is packed into ORDER for one batch:
    ``(time - low) << shift | position``."""

    low: int
    shift: int


def _input(index: int) -> str:
    return f"__in{index}"


class Aggregates:
    """Partial, merge and final expressions for a tuple of `Agg`.

    ``time_column`` is the input's event-time column, None when the input has
    none (then no aggregate may order by event time: `laminar_polars.plan.validate`
    refuses such a plan).
    """

    def __init__(self, aggs: Sequence[Agg], time_column: str | None) -> None:
        self.aggs = tuple(aggs)
        self.functions = tuple(aggregate(a.func) for a in self.aggs)
        self.time_column = time_column
        self.distinct = [i for i, f in enumerate(self.functions) if f.distinct]
        self.event_order = any(
            f.orders_by_event_time(a) for f, a in zip(self.functions, self.aggs, strict=True))
        assert time_column is not None or not self.event_order, "validate() refuses this plan"
        self._schemas: dict[tuple[str, ...], pl.Schema] = {}
        # Aggregates over the same input (open/high/low/close of one price)
        # share one projected column: fewer columns through every group_by.
        self.inputs: list[tuple[pl.Expr, str]] = []
        self.column_of: list[str] = []
        for i, agg in enumerate(self.aggs):
            if agg.expr is None:
                self.column_of.append("")
                continue
            same = next((name for expr, name in self.inputs if expr.meta.eq(agg.expr)), None)
            if same is None:
                same = _input(i)
                self.inputs.append((agg.expr, same))
            self.column_of.append(same)

    # -- per micro-batch -------------------------------------------------------
    def packing(self, batch: pl.DataFrame) -> Packing | None:
        """How to pack the event order of ``batch``, if any aggregate needs it
        and the batch's time span fits: then first/last take Polars' fast
        ``min_by``/``max_by`` over one integer column."""
        if not self.event_order or self.time_column is None or not batch.height:
            return None
        span = time_span(batch.get_column(self.time_column))
        shift = batch.height.bit_length()
        if span is None or (span[1] - span[0]) >> (63 - shift):
            return None
        return Packing(span[0], shift)

    def project(
        self, rows: pl.LazyFrame, group: Sequence[str], packing: Packing | None = None
    ) -> pl.LazyFrame:
        """Group columns, event time as integer microseconds (and, with a
        ``packing``, event order as ORDER), one column per distinct aggregate input."""
        columns: list[pl.Expr] = [pl.col(g) for g in group]
        if self.time_column is not None:
            time = pl.col(self.time_column).dt.epoch("us")
            columns.append(time.alias(TIME))
            if packing is not None:
                # with_row_index is a cheap source of positions; int_range is not
                rows = rows.with_row_index(_POSITION)
                order = ((time - packing.low) * (1 << packing.shift)
                         + pl.col(_POSITION).cast(pl.Int64))
                columns.append(order.alias(ORDER))
        columns += [expr.alias(name) for expr, name in self.inputs]
        return rows.select(columns)

    def partials(
        self, projected: pl.LazyFrame, group: Sequence[str], rows: int = 0,
        packing: Packing | None = None,
    ) -> pl.DataFrame:
        """One partial row per group of ``rows`` projected rows."""
        return collect(self.partials_lazy(projected, group, packing), rows)

    def partials_lazy(
        self, projected: pl.LazyFrame, group: Sequence[str], packing: Packing | None = None
    ) -> pl.LazyFrame:
        partials = projected.group_by(group).agg(self._partial_exprs(packing is not None))
        if packing is None:
            return partials
        # A function that picked by the packed ORDER kept it as its time: the high bits.
        def to_time(packed: pl.Expr) -> pl.Expr:
            return packed // (1 << packing.shift) + packing.low
        times = [e for f, a in zip(self.functions, self.aggs, strict=True)
                 for e in f.unpack(a, to_time)]
        return partials.with_columns(times) if times else partials

    def partial_of_nothing(self, projected: pl.LazyFrame) -> pl.LazyFrame:
        """The one partial row of no rows at all (counts 0, sums empty, extremes
        null), laid out like `partials` without its group columns. ``projected``
        gives the input columns' types; its rows are not read."""
        nothing = pl.LazyFrame(schema=projected.collect_schema())
        return nothing.select(self._partial_exprs(False))

    def row_partials(self, projected: pl.LazyFrame, group: Sequence[str]) -> pl.LazyFrame:
        """Each projected row as a partial of its own, laid out like `partials`
        so the two stack: a few rows can then be merged without a group_by."""
        schema = self._partial_schema(projected, group)
        exprs: list[pl.Expr] = [pl.col(g) for g in group]
        for i, (function, agg) in enumerate(zip(self.functions, self.aggs, strict=True)):
            exprs += function.row_partials(agg, pl.col(self.column_of[i]), pl.col(TIME))
        return projected.select(exprs).cast(schema)

    def _partial_schema(self, projected: pl.LazyFrame, group: Sequence[str]) -> pl.Schema:
        # An operator's input layout never changes, so one resolution serves.
        key = tuple(group)
        if key not in self._schemas:
            empty = pl.LazyFrame(schema=projected.collect_schema())
            partial = empty.group_by(group).agg(self._partial_exprs(False))
            self._schemas[key] = partial.collect_schema()
        return self._schemas[key]

    def distinct_rows(self, projected: pl.LazyFrame, group: Sequence[str]) -> list[pl.DataFrame]:
        """For each distinct-count aggregate, its distinct ``(group, value)`` rows."""
        return [collect(rows) for rows in self.distinct_rows_lazy(projected, group)]

    def distinct_rows_lazy(self, projected: pl.LazyFrame,
                           group: Sequence[str]) -> list[pl.LazyFrame]:
        return [projected.select(*group, pl.col(self.column_of[i]).alias(_VALUE)).unique()
                for i in self.distinct]

    # -- state -----------------------------------------------------------------
    def merge(self, partials: Sequence[pl.DataFrame], group: Sequence[str]) -> pl.DataFrame:
        """Partials of the same groups merged into one row per group; earlier
        frames count as earlier arrivals."""
        frames = [p for p in partials if p is not None]
        if len(frames) == 1:
            return frames[0]
        return collect(self.merge_lazy(pl.concat(frames, how="vertical").lazy(), group))

    def merge_lazy(self, stacked: pl.LazyFrame, group: Sequence[str]) -> pl.LazyFrame:
        """Merge partials stacked in arrival order into one row per group."""
        merges = [e for f, a in zip(self.functions, self.aggs, strict=True) for e in f.merges(a)]
        return stacked.group_by(group, maintain_order=True).agg(merges)

    @staticmethod
    def merge_distinct(sets: Sequence[pl.DataFrame | None]) -> pl.DataFrame:
        frames = [s for s in sets if s is not None]
        if len(frames) == 1:
            return frames[0]
        return pl.concat(frames, how="vertical").unique()

    def finalize(
        self,
        state: pl.LazyFrame,
        group: Sequence[str],
        distinct: Sequence[pl.DataFrame] | None = (),
        keep: Sequence[str] = (),
    ) -> pl.LazyFrame:
        """Final aggregate values, one row per group: the group columns, any
        ``keep`` columns of the state, then one column per aggregate.

        ``distinct`` holds each distinct count's ``(group, value)`` rows; None
        when the state already holds each distinct count under its name."""
        for slot, i in enumerate(self.distinct if distinct is not None else ()):
            assert distinct is not None
            # A distinct count is counted from its rows and joined to the state
            # under its own name (no partial column of the state has it).
            agg = self.aggs[i]
            counted = self.functions[i].count_distinct(agg, pl.col(_VALUE)).alias(agg.name)
            counts = distinct[slot].lazy().group_by(group).agg(counted)
            state = state.join(counts, on=list(group), how="left", nulls_equal=True)
        finals = [f.final(a) for f, a in zip(self.functions, self.aggs, strict=True)]
        return state.select(*[pl.col(g) for g in (*group, *keep)], *finals)

    def _partial_exprs(self, packed: bool) -> list[pl.Expr]:
        time, order = pl.col(TIME), pl.col(ORDER) if packed else None
        exprs: list[pl.Expr] = []
        for i, (function, agg) in enumerate(zip(self.functions, self.aggs, strict=True)):
            exprs += function.partials(agg, pl.col(self.column_of[i]), time, order)
        return exprs
