"""The plan nodes with more than one input: joins and UNION ALL.

Each join node stands for one Polars call, `apply`, which gives its output
columns (`schema`) and is what Polars would compute in batch on the same rows;
the engine's operator for the node computes the same rows incrementally,
deciding which buffered rows go into which call and when its watermarks make
them final (`laminar_polars.engine.ops`).

* `AsofJoin` — ``left.join_asof(right, strategy="backward", by=...)``: each
  left row with the latest right row of its key at or before its time (ties:
  the later arrival); ``how='inner'`` drops left rows without one (SQL's
  ``ASOF JOIN``), ``'left'`` keeps them with nulls (Polars', SQL's ``ASOF
  LEFT JOIN``).
* `IntervalJoin` — ``left.join_where(right, keys equal, right time within
  [left time + lower, left time + upper])``: every matching pair;
  ``how='left'`` (SQL only) also every left row without a match, with nulls.
* `EquiJoin` — ``left.join(right, left_on, right_on)``: every matching pair;
  a *window join* when the keys equate both inputs' event-time columns.
* `LookupJoin` — a stream joined with a static table (registered by name, or
  a frame fixed in the plan), each row with the table as it is then.
* `Union` — UNION ALL / ``pl.concat``: the inputs' rows, same columns.

Every join's output appends, and its event-time column is the left input's.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.plan import AsofJoin, Scan
>>> trades = Scan("trades", pl.Schema({"sym": pl.String, "px": pl.Float64,
...                                    "ts": pl.Datetime("us")}), "ts")
>>> quotes = Scan("quotes", pl.Schema({"sym": pl.String, "bid": pl.Float64,
...                                    "ts": pl.Datetime("us")}), "ts")
>>> join = AsofJoin(trades, quotes, "ts", "ts", ("sym",), ("sym",))
>>> join.schema
Schema([('sym', String), ('px', Float64), ('ts', Datetime(time_unit='us', time_zone=None)), ('bid', Float64)])
>>> join.time_column, join.how
('ts', 'left')
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, TypeVar

import polars as pl

if TYPE_CHECKING:
    from laminar_polars.plan.nodes import Node, Scan

__all__ = [
    "ASOF_MATCHED",
    "AsofJoin",
    "EquiJoin",
    "IntervalJoin",
    "JoinHow",
    "LookupJoin",
    "Union",
    "join_kind",
]

JoinHow = Literal["inner", "left"]
# A join's Polars call runs on frames or lazy frames alike (eager saves the
# engine the planning of a small query per batch).
Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)

# Marks the right rows in an ASOF join's Polars call: null where a left row found none.
ASOF_MATCHED = "__asof_matched"


def _micros(us: int) -> dt.timedelta:
    return dt.timedelta(microseconds=us)


def _empty(schema: pl.Schema) -> pl.LazyFrame:
    return pl.LazyFrame(schema=schema)


def _filtered(frame: pl.LazyFrame, residual: Sequence[pl.Expr]) -> pl.LazyFrame:
    return frame.filter(*residual) if residual else frame


@dataclasses.dataclass(frozen=True, eq=False)
class AsofJoin:
    """Each left row with the right row of the same ``by`` keys whose time
    ``right_on`` is the greatest at or before the left row's ``left_on``
    (strictly before without ``allow_exact_matches``), within
    ``tolerance_us`` if set. ``left_on`` and ``right_on`` are the inputs'
    event-time columns."""

    left: Node
    right: Node
    left_on: str
    right_on: str
    left_by: tuple[str, ...] = ()
    right_by: tuple[str, ...] = ()
    tolerance_us: int | None = None
    allow_exact_matches: bool = True
    how: JoinHow = "left"
    suffix: str = "_right"
    coalesce: bool = True

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def apply(self, left: Frame, right: Frame, *, marked: bool = False) -> Frame:
        """The join as Polars computes it (each side sorted by its time column).

        ``marked`` keeps every left row and the `ASOF_MATCHED` column (True
        where a right row was found, else null), whatever ``how`` is."""
        right = right.with_columns(pl.lit(True).alias(ASOF_MATCHED))
        out = left.join_asof(
            right, left_on=self.left_on, right_on=self.right_on,
            by_left=list(self.left_by) or None, by_right=list(self.right_by) or None,
            strategy="backward", suffix=self.suffix,
            tolerance=None if self.tolerance_us is None else _micros(self.tolerance_us),
            coalesce=self.coalesce, allow_exact_matches=self.allow_exact_matches,
            check_sortedness=False)
        if marked:
            return out
        if self.how == "inner":
            out = out.filter(pl.col(ASOF_MATCHED).is_not_null())
        return out.drop(ASOF_MATCHED)

    @property
    def schema(self) -> pl.Schema:
        return self.apply(_empty(self.left.schema), _empty(self.right.schema)).collect_schema()

    @property
    def time_column(self) -> str | None:
        return self.left.time_column

    @property
    def appends_only(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, eq=False)
class IntervalJoin:
    """Pairs of a left and a right row with equal keys whose times satisfy
    ``left time + lower_us <= right time <= left time + upper_us`` (``<``
    where the bound is strict), and the ``residual`` predicates (over the
    output columns; inner joins only). The output is ``join_where``'s: the
    left columns, then the right ones, ``suffix`` added to a name the left
    has."""

    left: Node
    right: Node
    left_on: str
    right_on: str
    lower_us: int
    upper_us: int
    left_keys: tuple[str, ...] = ()
    right_keys: tuple[str, ...] = ()
    lower_strict: bool = False
    upper_strict: bool = False
    residual: tuple[pl.Expr, ...] = ()
    how: JoinHow = "inner"
    suffix: str = "_right"

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    def right_name(self, column: str) -> str:
        """What right column ``column`` is called in the output."""
        return column + self.suffix if column in self.left.schema else column

    def predicates(self) -> list[pl.Expr]:
        """The join condition as ``join_where`` predicates."""
        left_time, right_time = pl.col(self.left_on), pl.col(self.right_name(self.right_on))
        low = left_time + _micros(self.lower_us) if self.lower_us else left_time
        high = left_time + _micros(self.upper_us) if self.upper_us else left_time
        keys = [pl.col(self.right_name(r)) == pl.col(left)
                for left, r in zip(self.left_keys, self.right_keys, strict=True)]
        return [*keys, right_time > low if self.lower_strict else right_time >= low,
                right_time < high if self.upper_strict else right_time <= high]

    def apply(self, left: pl.LazyFrame, right: pl.LazyFrame) -> pl.LazyFrame:
        """The matching pairs as Polars computes them (the inner join)."""
        pairs = left.join_where(right, *self.predicates(), suffix=self.suffix)
        return _filtered(pairs, self.residual)

    @property
    def schema(self) -> pl.Schema:
        left, right = self.left.schema, self.right.schema
        return pl.Schema({**left, **{self.right_name(c): t for c, t in right.items()}})

    @property
    def time_column(self) -> str | None:
        return self.left.time_column

    @property
    def appends_only(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, eq=False)
class EquiJoin:
    """Pairs of a left and a right row with ``left_on`` equal to ``right_on``
    (null keys never match unless ``nulls_equal``), as Polars' ``join``
    with ``suffix`` and ``coalesce`` lays them out, filtered by ``residual``
    (inner joins only). A *window join* when a key pair is both inputs'
    event-time columns: its state is freed by the watermarks. Otherwise the
    state is kept, or for ``state_ttl_us`` of event time behind the join's
    watermark."""

    left: Node
    right: Node
    left_on: tuple[str, ...]
    right_on: tuple[str, ...]
    how: JoinHow = "inner"
    suffix: str = "_right"
    coalesce: bool = True
    nulls_equal: bool = False
    residual: tuple[pl.Expr, ...] = ()
    state_ttl_us: int | None = None

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.left, self.right)

    @property
    def windowed(self) -> bool:
        """Whether a key pair equates both inputs' event-time columns."""
        left, right = self.left.time_column, self.right.time_column
        pairs = list(zip(self.left_on, self.right_on, strict=True))
        return left is not None and right is not None and (left, right) in pairs

    def apply(self, left: pl.LazyFrame, right: pl.LazyFrame,
              how: JoinHow | None = None) -> pl.LazyFrame:
        """The join as Polars computes it (``how`` overrides the node's)."""
        joined = left.join(right, left_on=list(self.left_on), right_on=list(self.right_on),
                           how=how or self.how, suffix=self.suffix, coalesce=self.coalesce,
                           nulls_equal=self.nulls_equal)
        return _filtered(joined, self.residual)

    @property
    def schema(self) -> pl.Schema:
        return self.apply(_empty(self.left.schema), _empty(self.right.schema)).collect_schema()

    @property
    def time_column(self) -> str | None:
        if self.windowed or self.state_ttl_us is not None:
            return self.left.time_column
        return None  # a pair can be made of rows however old

    @property
    def appends_only(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, eq=False)
class LookupJoin:
    """Rows of ``left`` joined with a static table: ``table``, a registered
    table read when each batch is processed (a `Scan` with ``table=True``),
    or ``frame``, fixed in the plan (a LazyFrame's static DataFrame). Keys,
    layout and ``residual`` as in `EquiJoin`."""

    left: Node
    table: Scan | None
    frame: pl.DataFrame | None
    left_on: tuple[str, ...]
    right_on: tuple[str, ...]
    how: JoinHow = "inner"
    suffix: str = "_right"
    coalesce: bool = True
    nulls_equal: bool = False
    residual: tuple[pl.Expr, ...] = ()

    def __post_init__(self) -> None:
        if (self.table is None) == (self.frame is None):
            raise ValueError("a lookup join reads a registered table or a fixed frame")

    @property
    def inputs(self) -> tuple[Node, ...]:
        return (self.left,)

    @property
    def table_schema(self) -> pl.Schema:
        if self.table is not None:
            return self.table.schema
        assert self.frame is not None
        return self.frame.schema

    @property
    def table_name(self) -> str | None:
        return None if self.table is None else self.table.name

    def apply(self, left: pl.LazyFrame, table: pl.LazyFrame) -> pl.LazyFrame:
        joined = left.join(table, left_on=list(self.left_on), right_on=list(self.right_on),
                           how=self.how, suffix=self.suffix, coalesce=self.coalesce,
                           nulls_equal=self.nulls_equal)
        return _filtered(joined, self.residual)

    @property
    def schema(self) -> pl.Schema:
        return self.apply(_empty(self.left.schema), _empty(self.table_schema)).collect_schema()

    @property
    def time_column(self) -> str | None:
        return self.left.time_column

    @property
    def appends_only(self) -> bool:
        return True


@dataclasses.dataclass(frozen=True, eq=False)
class Union:
    """UNION ALL: the rows of every input, which have the same columns."""

    inputs: tuple[Node, ...]

    @property
    def schema(self) -> pl.Schema:
        return self.inputs[0].schema

    @property
    def time_column(self) -> str | None:
        times = {node.time_column for node in self.inputs}
        return times.pop() if len(times) == 1 else None

    @property
    def appends_only(self) -> bool:
        return all(node.appends_only for node in self.inputs)


def join_kind(node: AsofJoin | IntervalJoin | EquiJoin | LookupJoin) -> str:
    """A join's kind in words: 'asof', 'interval', 'window', 'equi' or 'lookup'."""
    if isinstance(node, AsofJoin):
        return "asof"
    if isinstance(node, IntervalJoin):
        return "interval"
    if isinstance(node, LookupJoin):
        return "lookup"
    return "window" if node.windowed else "equi"
