"""The aggregate registry: what each aggregate function of a plan means.

An `Agg` names its function (``Agg.func``); `aggregate` looks that name up in
`AGGREGATES`, one `AggregateFunction` per function. An entry says, as Polars
expressions, everything the rest of the package needs to know about the
function:

* its **result type**, given the type of its input (`AggregateFunction.result_type`);
* its **partial**: a few columns (`AggregateFunction.partial_columns`) that
  summarize some rows, so that two partials merge into the partial of both:
  per micro-batch (`AggregateFunction.partials`, also in the packed event
  order the engine uses for first/last), per single row
  (`AggregateFunction.row_partials`), and merged (`AggregateFunction.merges`);
* its **final** value from a merged partial (`AggregateFunction.final`), where
  the ``Agg`` options apply: SQL's sum of no values is NULL (``null_sum``), a
  mean is the sum over the count;
* whether it is kept as **distinct rows** beside the state instead
  (``distinct``: ``n_unique``, whose partial cannot be merged from numbers)
  and how those rows are counted (`AggregateFunction.count_distinct`);
* how each front end spells it (``sql_name``, ``polars_name``).

The engine (`laminar_polars.engine.aggregates`) does the mechanics: which
columns are projected, how event order is packed, when Polars collects, how
partial frames are stacked. Partial columns are named after the `Agg`:
``name`` itself, ``name#c`` (a count of non-null values), ``name#t`` (the
event time of the value picked by first/last).

Examples
--------
A sum over two micro-batches: partials per batch, stacked and merged, then the
final value. With ``null_sum='null'`` (SQL), a sum of no values is NULL:

>>> import polars as pl
>>> from laminar_polars.plan import Agg, aggregate
>>> volume = Agg("volume", "sum", pl.col("qty"))
>>> function = aggregate(volume.func)
>>> function.partial_columns(volume)
('volume', 'volume#c')
>>> function.result_type(pl.Int32)
Int32
>>> value, time = pl.col("qty"), pl.col("ts")
>>> batches = [pl.DataFrame({"qty": [1, None, 2], "ts": [1, 2, 3]}),
...            pl.DataFrame({"qty": [4], "ts": [4]})]
>>> partials = pl.concat([b.select(function.partials(volume, value, time)) for b in batches])
>>> merged = partials.select(function.merges(volume))
>>> merged.select(function.final(volume)).item()
7
>>> nothing = pl.DataFrame({"qty": [None], "ts": [5]}, schema={"qty": pl.Int64, "ts": pl.Int64})
>>> print(nothing.select(function.partials(volume, value, time)).select(function.final(volume))
...       .item())
None
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal

import polars as pl

if TYPE_CHECKING:
    from laminar_polars.plan.nodes import Agg

__all__ = [
    "AGGREGATES",
    "AggFunc",
    "AggregateFunction",
    "aggregate",
]

AggFunc = Literal[
    "count_star",  # rows, nulls included (SQL count(*), Polars pl.len())
    "count",       # non-null values of expr
    "sum", "min", "max", "mean",
    "first", "last",  # by event time then arrival ('event'), or by arrival only
    "n_unique",       # distinct non-null values (SQL count(DISTINCT x))
]

Reduce = Callable[[pl.Expr], pl.Expr]


def _count_column(agg: Agg) -> str:
    return f"{agg.name}#c"


def _time_column(agg: Agg) -> str:
    return f"{agg.name}#t"


def _present(value: pl.Expr) -> pl.Expr:
    """1 for a non-null value, else 0: a one-row count."""
    return value.is_not_null().cast(pl.UInt32)


@dataclasses.dataclass(frozen=True)
class AggregateFunction:
    """One aggregate function: its result type, partial, merge and final value.

    This base is a function whose partial is one column, reduced per batch and
    merged by the same Polars reduction (``min``, ``max``, ``first`` and
    ``last`` by arrival). Subclasses override what differs.

    Parameters
    ----------
    name
        The plan's name for it (``Agg.func``).
    sql_name, polars_name
        How SQL and Polars spell it (``avg``, ``first_value``; ``mean``,
        ``len``). count(*), count(x) and count(DISTINCT x) share ``count``.
    reduce
        Polars' own aggregate over a whole column: the result the partial,
        merge and final expressions reproduce over micro-batches (for
        ``first``/``last`` by event time: over the rows in event order).
    result
        A fixed result type, if the input type does not decide it.
    takes_input
        Whether an `Agg` of it has an input expression (all but count(*)).
    distinct
        Whether it is kept as distinct ``(group, value)`` rows beside the
        state instead of a partial (distinct counts).
    """

    name: AggFunc
    sql_name: str
    polars_name: str
    reduce: Reduce
    result: pl.DataType | None = None
    takes_input: bool = True
    distinct: bool = False

    # -- what the planner needs ----------------------------------------------
    def result_type(self, input: pl.DataType | None) -> pl.DataType:
        """The type of the final value for an input of type ``input`` (None for count(*))."""
        if self.result is not None:
            return self.result
        assert input is not None, f"{self.name} takes an input"
        return _reduced_type(self.reduce, input)

    def orders_by_event_time(self, agg: Agg) -> bool:
        """Whether ``agg`` needs its input's event-time column (first/last by event order)."""
        return False

    # -- partials --------------------------------------------------------------
    def partial_columns(self, agg: Agg) -> tuple[str, ...]:
        """The columns of ``agg``'s partial, in the order every expression list has them."""
        return (agg.name,)

    def partials(
        self, agg: Agg, value: pl.Expr, time: pl.Expr, order: pl.Expr | None = None
    ) -> list[pl.Expr]:
        """The partial of a group of rows, as aggregating expressions for a
        ``group_by(...).agg`` (or a ``select`` over one group).

        ``value`` is the input column, ``time`` the event time in integer
        microseconds. ``order``, when given, is the rows' event order packed
        into one integer (time in the high bits, arrival below); a function
        ordering by event time may pick by it (one fast pass) and leave the
        packed order in its time column, for `unpack` to turn back into a time.
        """
        return [self.reduce(value).alias(agg.name)]

    def unpack(self, agg: Agg, to_time: Callable[[pl.Expr], pl.Expr]) -> list[pl.Expr]:
        """After `partials` with ``order``: the columns that hold a packed
        order, turned into event times by ``to_time``."""
        return []

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        """Each row as a partial of its own (row-wise expressions), with the
        columns and types of `partials` so the two stack."""
        return [value.alias(agg.name)]

    def merges(self, agg: Agg) -> list[pl.Expr]:
        """Aggregating expressions that merge partials stacked in arrival order
        into one partial per group, named as the partial's columns."""
        return [self.reduce(pl.col(agg.name))]

    def final(self, agg: Agg) -> pl.Expr:
        """The final value, named ``agg.name``, from a merged partial."""
        return pl.col(agg.name)

    # -- distinct rows ---------------------------------------------------------
    def count_distinct(self, agg: Agg, values: pl.Expr) -> pl.Expr:
        """For a ``distinct`` function: its final value from a group's
        distinct ``values`` (before `final`, which fills groups without rows)."""
        raise ValueError(f"{self.name} is not kept as distinct rows")


@functools.lru_cache(maxsize=256)
def _reduced_type(reduce: Reduce, input: pl.DataType) -> pl.DataType:
    """What Polars makes of ``reduce`` over a column of type ``input``."""
    probe = pl.LazyFrame(schema={"input": input}).select(reduce(pl.col("input")))
    return probe.collect_schema().dtypes()[0]


@dataclasses.dataclass(frozen=True)
class _CountRows(AggregateFunction):
    """count(*): rows, nulls included."""

    def partials(self, agg: Agg, value: pl.Expr, time: pl.Expr,
                 order: pl.Expr | None = None) -> list[pl.Expr]:
        return [pl.len().alias(agg.name)]

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        return [pl.lit(1, pl.UInt32).alias(agg.name)]

    def merges(self, agg: Agg) -> list[pl.Expr]:
        return [pl.col(agg.name).sum()]


@dataclasses.dataclass(frozen=True)
class _CountValues(AggregateFunction):
    """count(x): non-null values."""

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        return [_present(value).alias(agg.name)]

    def merges(self, agg: Agg) -> list[pl.Expr]:
        return [pl.col(agg.name).sum()]


@dataclasses.dataclass(frozen=True)
class _Sum(AggregateFunction):
    """sum, and the base of mean: the sum and the count of non-null values.

    The count decides what a sum of no values is: NULL (SQL, ``null_sum='null'``)
    or 0 (Polars, ``null_sum='zero'``).
    """

    def partial_columns(self, agg: Agg) -> tuple[str, ...]:
        return (agg.name, _count_column(agg))

    def partials(self, agg: Agg, value: pl.Expr, time: pl.Expr,
                 order: pl.Expr | None = None) -> list[pl.Expr]:
        return [value.sum().alias(agg.name), value.count().alias(_count_column(agg))]

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        return [value.alias(agg.name), _present(value).alias(_count_column(agg))]

    def merges(self, agg: Agg) -> list[pl.Expr]:
        return [pl.col(agg.name).sum(), pl.col(_count_column(agg)).sum()]

    def final(self, agg: Agg) -> pl.Expr:
        if agg.null_sum == "zero":
            return pl.col(agg.name)
        return pl.when(pl.col(_count_column(agg)) > 0).then(pl.col(agg.name)) \
            .otherwise(None).alias(agg.name)


@dataclasses.dataclass(frozen=True)
class _Mean(_Sum):
    """mean: the sum over the count of non-null values; NULL without any."""

    def final(self, agg: Agg) -> pl.Expr:
        value, count = pl.col(agg.name), pl.col(_count_column(agg))
        return pl.when(count > 0).then(value / count).otherwise(None).alias(agg.name)


@dataclasses.dataclass(frozen=True)
class _Positional(AggregateFunction):
    """first and last: by arrival (``order='arrival'``), the base's one
    column; by event time (``order='event'``), the value and its event time,
    ties in time broken by arrival (first: the earliest arrival, last: the
    latest)."""

    def orders_by_event_time(self, agg: Agg) -> bool:
        return agg.order == "event"

    def partial_columns(self, agg: Agg) -> tuple[str, ...]:
        if not self.orders_by_event_time(agg):
            return (agg.name,)
        return (agg.name, _time_column(agg))

    def partials(self, agg: Agg, value: pl.Expr, time: pl.Expr,
                 order: pl.Expr | None = None) -> list[pl.Expr]:
        if not self.orders_by_event_time(agg):
            return super().partials(agg, value, time, order)
        if order is not None:  # event order packed with arrival: one fast pass
            if self.name == "first":
                return [value.min_by(order).alias(agg.name),
                        order.min().alias(_time_column(agg))]
            return [value.max_by(order).alias(agg.name), order.max().alias(_time_column(agg))]
        return [self._pick(value, time).alias(agg.name),
                self._when(time).alias(_time_column(agg))]

    def unpack(self, agg: Agg, to_time: Callable[[pl.Expr], pl.Expr]) -> list[pl.Expr]:
        if not self.orders_by_event_time(agg):
            return []
        return [to_time(pl.col(_time_column(agg))).alias(_time_column(agg))]

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        if not self.orders_by_event_time(agg):
            return super().row_partials(agg, value, time)
        return [value.alias(agg.name), time.alias(_time_column(agg))]

    def merges(self, agg: Agg) -> list[pl.Expr]:
        if not self.orders_by_event_time(agg):
            return super().merges(agg)
        when = pl.col(_time_column(agg))
        return [self._pick(pl.col(agg.name), when), self._when(when)]

    def _pick(self, value: pl.Expr, time: pl.Expr) -> pl.Expr:
        """The value at the earliest (first) or latest (last) time; ties go to
        the earliest arrival (first) or the latest (last)."""
        if self.name == "first":
            return value.get(time.arg_min())
        return value.filter(time == time.max()).last()

    def _when(self, time: pl.Expr) -> pl.Expr:
        return time.min() if self.name == "first" else time.max()


@dataclasses.dataclass(frozen=True)
class _CountDistinct(AggregateFunction):
    """n_unique: distinct values, kept as distinct rows beside the state (a
    distinct count cannot be merged from two counts). Null counts as a value
    only with ``count_null`` (Polars' ``n_unique``; SQL's count(DISTINCT) skips it)."""

    def partial_columns(self, agg: Agg) -> tuple[str, ...]:
        return ()

    def partials(self, agg: Agg, value: pl.Expr, time: pl.Expr,
                 order: pl.Expr | None = None) -> list[pl.Expr]:
        return []

    def row_partials(self, agg: Agg, value: pl.Expr, time: pl.Expr) -> list[pl.Expr]:
        raise ValueError("distinct counts have no per-row partial")

    def merges(self, agg: Agg) -> list[pl.Expr]:
        return []

    def count_distinct(self, agg: Agg, values: pl.Expr) -> pl.Expr:
        return (values if agg.count_null else values.drop_nulls()).n_unique()

    def final(self, agg: Agg) -> pl.Expr:
        return pl.col(agg.name).fill_null(0).cast(pl.UInt32).alias(agg.name)


def _registry(functions: Sequence[AggregateFunction]) -> dict[str, AggregateFunction]:
    return {function.name: function for function in functions}


# The order is the one error messages list the supported functions in.
AGGREGATES: dict[str, AggregateFunction] = _registry([
    _CountRows("count_star", "count", "len", lambda v: pl.len(), result=pl.UInt32(),
               takes_input=False),
    _CountValues("count", "count", "count", pl.Expr.count, result=pl.UInt32()),
    _Sum("sum", "sum", "sum", pl.Expr.sum),
    AggregateFunction("min", "min", "min", pl.Expr.min),
    AggregateFunction("max", "max", "max", pl.Expr.max),
    _Mean("mean", "avg", "mean", pl.Expr.mean),
    _Positional("first", "first_value", "first", pl.Expr.first),
    _Positional("last", "last_value", "last", pl.Expr.last),
    _CountDistinct("n_unique", "count", "n_unique", pl.Expr.n_unique, result=pl.UInt32(),
                   distinct=True),
])


def aggregate(func: str) -> AggregateFunction:
    """The registry's entry for ``func`` (an ``Agg.func``).

    >>> aggregate("mean").sql_name, aggregate("mean").polars_name
    ('avg', 'mean')
    >>> aggregate("median")
    Traceback (most recent call last):
    ...
    ValueError: unknown aggregate 'median'; expected one of count_star, count, sum, min, max, mean, first, last, n_unique
    """  # noqa: E501
    try:
        return AGGREGATES[func]
    except KeyError:
        raise ValueError(f"unknown aggregate {func!r}; expected one of "
                         f"{', '.join(AGGREGATES)}") from None
