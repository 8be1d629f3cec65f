"""`EquiJoinOperator`: every pair of rows with equal keys, emitted as soon as
both rows are there.

Each new row is joined (Polars ``join``) with the other side's kept rows,
then kept itself, so a pair is made exactly once: when the later of its two
rows arrives.

What is kept, and for how long:

- a *window join* (the keys equate both inputs' event-time columns): a row
  still to come on a side is at or after that side's watermark, so a left
  row is freed once the right watermark passes its time, a right row once
  the left watermark does; under ``LEFT JOIN`` a freed left row that never
  matched goes out then, with nulls (laid out by Polars' left join);
- with a state TTL: every row, until the join's watermark (the smaller of
  the sides') is more than the TTL past its time — a partner arriving later
  finds nothing;
- otherwise every row, for good (the state grows with the inputs).

The output's event time is the left row's: the join's watermark for a window
join, the TTL behind it with one; an unbounded join's output has none.

Durable state: ``left`` and ``right`` (the kept rows; a LEFT join's left rows
with their ID and whether they matched), both sides' watermarks.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import collect
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.ops.sides import KeptSides, concat, joined, shifted, time_us
from laminar_polars.engine.sentinels import CLOSED_WATERMARK, NO_WATERMARK
from laminar_polars.plan import EquiJoin

__all__ = ["EquiJoinOperator"]


class EquiJoinOperator(KeptSides):
    """An `EquiJoin` node's state and matching."""

    def __init__(self, node: EquiJoin) -> None:
        super().__init__((node.left.time_column, node.right.time_column), node.how == "left")
        self.node = node
        self.windowed = node.windowed
        self.ttl = node.state_ttl_us
        self.left_empty = pl.DataFrame(schema=node.left.schema)
        self.right_empty = pl.DataFrame(schema=node.right.schema)

    def output_watermark(self, watermark: int) -> int:
        if self.windowed:
            return self.low
        if self.ttl is not None:
            return shifted(self.low, -self.ttl)
        return CLOSED_WATERMARK if self.low == CLOSED_WATERMARK else NO_WATERMARK

    # -- the operator interface ----------------------------------------------------
    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        rows = self.admit(port, delta.rows)
        if not rows.height:
            return None
        # A new row is matched with the other side's rows, then kept, unless it
        # is already past where rows are freed (then it is freed at once).
        if port == 0:
            if self.outer:
                rows = self.numbered(rows)
            pairs = self._pairs(rows, self.right)
            if self.outer:
                rows = self.marked(rows, pairs)
            rows, lonely = self._expire_left(rows)
            self.left = concat([self.left, rows])
            return joined(self.pairs_out(pairs), lonely)
        pairs = self._pairs(self.left, rows)
        if self.outer and self.left is not None:
            self.left = self.marked(self.left, pairs)
        self.right = concat([self.right, self._unexpired_right(rows)])
        return self.pairs_out(pairs)

    def advanced(self, port: int) -> Delta | None:
        lonely = None
        if self.left is not None and (self.ttl is not None or port == 1):
            self.left, lonely = self._expire_left(self.left)
        if self.right is not None and (self.ttl is not None or port == 0):
            self.right = self._unexpired_right(self.right)
        return lonely

    def _cutoffs(self) -> tuple[int, int]:
        """Left rows before the first, right rows before the second are freed."""
        if self.windowed:
            return self.marks[1], self.marks[0]
        if self.ttl is not None:
            cutoff = shifted(self.low, -self.ttl)
            return cutoff, cutoff
        return NO_WATERMARK, NO_WATERMARK  # kept for good

    def _expire_left(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, Delta | None]:
        """Left ``rows`` still to keep; under LEFT JOIN also the output rows of
        those freed without a match (laid out by Polars' left join)."""
        time, before = self.times[0], self._cutoffs()[0]
        if time is None or before == NO_WATERMARK:
            return rows, None
        done = time_us(time) < before
        expired, kept = rows.filter(done), rows.filter(~done)
        self.freed[0] += expired.height
        if not self.outer or not expired.height:
            return kept, None
        lonely = self.ended_unmatched(expired)
        if not lonely.height:
            return kept, None
        return kept, Delta(collect(self.node.apply(lonely.lazy(), self.right_empty.lazy(),
                                                    "left")))

    def _unexpired_right(self, rows: pl.DataFrame) -> pl.DataFrame:
        time, before = self.times[1], self._cutoffs()[1]
        if time is None or before == NO_WATERMARK:
            return rows
        kept = rows.filter(time_us(time) >= before)
        self.freed[1] += rows.height - kept.height
        return kept

    def _pairs(self, left: pl.DataFrame | None, right: pl.DataFrame | None
               ) -> pl.DataFrame | None:
        if left is None or right is None or not left.height or not right.height:
            return None
        return collect(self.node.apply(left.lazy(), right.lazy(), "inner"))
