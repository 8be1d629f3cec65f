"""Partial aggregates: the arithmetic of every aggregate, as Polars expressions.

An aggregate is kept as a *partial* per group: a few columns that two partials
can be merged from (sums, counts, extremes, the first value together with its
event time). The engine computes partials of each micro-batch in one Polars
``group_by``, merges them into its state in another, and finalizes a group
when it emits it. Distinct counts cannot be merged from numbers, so their
partial is the set of distinct ``(group, value)`` rows, kept beside the state.

Input rows are first *projected*: the group columns, the event time as
``TIME`` (integer microseconds) and one column per aggregate input, so each
input expression is evaluated once per row.

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
from collections.abc import Callable, Sequence
from typing import NamedTuple

import polars as pl

from laminar_polars.plan import Agg

__all__ = ["OP", "TIME", "Aggregates", "Output", "Packing", "collect", "mark_new", "time_span"]

OP = "__op"  # on rows emitted as upserts: 'insert' (a new group) or 'update'

TIME = "__time"

# What a view makes of an operator's final rows (HAVING, its output columns),
# given the extra columns (OP) to carry along. Operators apply it inside their
# last Polars call, so emitting takes one collect.
Output = Callable[[pl.LazyFrame, Sequence[str]], pl.LazyFrame]
# Event order within one micro-batch as one integer: time since the batch's
# earliest row, shifted left past the row's position, plus the position. For
# a batch of a million rows that leaves 2**43 us (101 days) of time.
ORDER = "__order"
_POSITION = "__position"


# Below this many input rows the in-memory engine wins (its start-up cost is
# a quarter of the streaming engine's); above it the streaming engine's
# parallel hash aggregation is 1.5-2x faster (measured on 2 cores).
STREAMING_ROWS = 1 << 15


def collect(frame: pl.LazyFrame, rows: int = 0) -> pl.DataFrame:
    """Run ``frame`` on the engine that suits ``rows`` input rows."""
    return frame.collect(engine="streaming" if rows >= STREAMING_ROWS else "in-memory")


def mark_new(groups: pl.DataFrame, state: pl.DataFrame | None, on: list[str]) -> pl.DataFrame:
    """``groups`` with an OP column: 'insert' where the state has no such group yet."""
    if state is None:
        return groups.with_columns(pl.lit("insert").alias(OP))
    known = state.select(on).with_columns(pl.lit("update").alias(OP))
    return groups.join(known, on=on, how="left", nulls_equal=True).with_columns(
        pl.col(OP).fill_null("insert"))


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
    return micros.min(), micros.max()  # type: ignore[return-value]


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
    none (then no aggregate may order by event time).
    """

    def __init__(self, aggs: Sequence[Agg], time_column: str | None) -> None:
        self.aggs = tuple(aggs)
        self.time_column = time_column
        self.distinct = [i for i, a in enumerate(self.aggs) if a.func == "n_unique"]
        self.event_order = any(
            a.func in ("first", "last") and a.order == "event" for a in self.aggs)
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
        # First/last took the extreme ORDER; their event time is its high bits.
        times = [(pl.col(f"{a.name}#t") // (1 << packing.shift) + packing.low).alias(f"{a.name}#t")
                 for a in self.aggs if a.func in ("first", "last") and a.order == "event"]
        return partials.with_columns(times)

    def row_partials(self, projected: pl.LazyFrame, group: Sequence[str]) -> pl.LazyFrame:
        """Each projected row as a partial of its own, laid out like `partials`
        so the two stack: a few rows can then be merged without a group_by."""
        schema = self._partial_schema(projected, group)
        time = pl.col(TIME)
        exprs: list[pl.Expr] = [pl.col(g) for g in group]
        for i, agg in enumerate(self.aggs):
            value, name = pl.col(self.column_of[i]), agg.name
            present = value.is_not_null().cast(pl.UInt32)
            if agg.func == "n_unique":
                raise ValueError("distinct counts have no per-row partial")
            if agg.func == "count_star":
                exprs.append(pl.lit(1, pl.UInt32).alias(name))
            elif agg.func == "count":
                exprs.append(present.alias(name))
            elif agg.func in ("sum", "mean"):
                exprs += [value.alias(name), present.alias(f"{name}#c")]
            elif agg.func in ("first", "last") and agg.order == "event":
                exprs += [value.alias(name), time.alias(f"{name}#t")]
            else:  # min, max, first/last by arrival
                exprs.append(value.alias(name))
        return projected.select(exprs).cast(dict(schema))

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
        return [
            collect(projected.select(*group, pl.col(self.column_of[i]).alias("__value")).unique())
            for i in self.distinct
        ]

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
        return stacked.group_by(group, maintain_order=True).agg(self._merge_exprs())

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
        distinct: Sequence[pl.DataFrame] = (),
        keep: Sequence[str] = (),
    ) -> pl.LazyFrame:
        """Final aggregate values, one row per group: the group columns, any
        ``keep`` columns of the state, then one column per aggregate."""
        finals: list[pl.Expr] = [pl.col(g) for g in (*group, *keep)]
        for i, agg in enumerate(self.aggs):
            if agg.func == "n_unique":
                counted = distinct[self.distinct.index(i)]
                value = pl.col("__value") if agg.count_null else pl.col("__value").drop_nulls()
                counts = counted.lazy().group_by(group).agg(value.n_unique().alias(f"__n{i}"))
                state = state.join(counts, on=list(group), how="left", nulls_equal=True)
                finals.append(pl.col(f"__n{i}").fill_null(0).cast(pl.UInt32).alias(agg.name))
            else:
                finals.append(self._final_expr(agg))
        return state.select(finals)

    # -- the arithmetic --------------------------------------------------------
    def _partial_exprs(self, packed: bool) -> list[pl.Expr]:
        time, order = pl.col(TIME), pl.col(ORDER)
        exprs: list[pl.Expr] = []
        for i, agg in enumerate(self.aggs):
            value, name = pl.col(self.column_of[i]), agg.name
            if agg.func == "n_unique":
                continue  # kept as distinct rows beside the state
            if agg.func == "count_star":
                exprs.append(pl.len().alias(name))
            elif agg.func == "count":
                exprs.append(value.count().alias(name))
            elif agg.func in ("sum", "mean"):
                exprs += [value.sum().alias(name), value.count().alias(f"{name}#c")]
            elif agg.func in ("min", "max"):
                exprs.append(getattr(value, agg.func)().alias(name))
            elif agg.order == "arrival":
                exprs.append(getattr(value, agg.func)().alias(name))
            elif packed:  # event order packed with arrival: one fast pass
                pick = value.min_by(order) if agg.func == "first" else value.max_by(order)
                when = order.min() if agg.func == "first" else order.max()  # see partials_lazy
                exprs += [pick.alias(name), when.alias(f"{name}#t")]
            elif agg.func == "first":  # earliest event time; ties: earliest arrival
                exprs += [value.get(time.arg_min()).alias(name), time.min().alias(f"{name}#t")]
            elif agg.func == "last":  # latest event time; ties: latest arrival
                exprs += [value.filter(time == time.max()).last().alias(name),
                          time.max().alias(f"{name}#t")]
        return exprs

    def _merge_exprs(self) -> list[pl.Expr]:
        exprs: list[pl.Expr] = []
        for agg in self.aggs:
            name = agg.name
            value, when = pl.col(name), pl.col(f"{name}#t")
            if agg.func == "n_unique":
                continue
            if agg.func in ("count_star", "count"):
                exprs.append(value.sum())
            elif agg.func in ("sum", "mean"):
                exprs += [value.sum(), pl.col(f"{name}#c").sum()]
            elif agg.func in ("min", "max"):
                exprs.append(getattr(value, agg.func)())
            elif agg.order == "arrival":
                exprs.append(getattr(value, agg.func)())
            elif agg.func == "first":
                exprs += [value.get(when.arg_min()), when.min()]
            elif agg.func == "last":
                exprs += [value.filter(when == when.max()).last(), when.max()]
        return exprs

    @staticmethod
    def _final_expr(agg: Agg) -> pl.Expr:
        name = agg.name
        value, count = pl.col(name), pl.col(f"{name}#c")
        if agg.func == "sum" and agg.null_sum == "null":
            return pl.when(count > 0).then(value).otherwise(None).alias(name)
        if agg.func == "mean":
            return pl.when(count > 0).then(value / count).otherwise(None).alias(name)
        return value
