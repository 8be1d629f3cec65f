"""`IntervalJoinOperator`: every pair of rows with equal keys whose times are
within the interval, emitted as soon as both rows are there.

Each new row is matched against the other side's kept rows, then kept
itself, so a pair is made exactly once: when the later of its two rows
arrives. With the interval ``left time + lower <= right time <= left time +
upper``, a right row still to come is at or after the right watermark, so a
left row is of no more use once ``left time + upper`` is behind it; a left
row still to come is at or after the left watermark, so a right row is of
no more use once ``right time - lower`` is behind that. Both are freed then;
under ``LEFT JOIN`` a freed left row that never matched goes out with nulls.

The output's event time is the left row's, and a pair can still be made of a
kept left row as old as the right watermark minus ``upper``: the output
watermark is the smaller of that and the left watermark.

Matching is Polars': two ``join_asof`` calls find, for each left row, the
first and the last right row of its key within the interval (the right rows
sorted by key, then time), and the pairs are those ranges, exploded and
gathered; the output is laid out as ``join_where``'s. (Without keys this is
some 2x faster here than ``join_where``'s own inequality join.) A large
batch is matched in slices of `SLICE_ROWS` rows by time, each against the
kept rows of the other side within its reach only (found by binary search in
them, sorted by time): the cost of a match grows with the batch, not with
the square of a large micro-batch.

Durable state: ``left`` and ``right`` (the kept rows; a LEFT join's left rows
with their ID and whether they matched), both sides' watermarks.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import collect
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.ops.sides import KeptSides, concat, joined, shifted, time_us
from laminar_polars.plan import IntervalJoin

__all__ = ["IntervalJoinOperator"]

# Batches are matched in slices of at most this many rows (see the module docstring).
SLICE_ROWS = 1 << 16

_LEFT_ROW, _RIGHT_ROW = "__left_row", "__right_row"
_LOW, _HIGH, _TIME = "__low", "__high", "__time"
_FIRST, _LAST = "__first", "__last"


class IntervalJoinOperator(KeptSides):
    """An `IntervalJoin` node's state and matching."""

    def __init__(self, node: IntervalJoin) -> None:
        super().__init__((node.left_on, node.right_on), node.how == "left")
        self.node = node
        right_schema = node.right.schema
        self.renamed = {c: node.right_name(c) for c in right_schema}
        self.right_output = pl.Schema({self.renamed[c]: t for c, t in right_schema.items()})

    def output_watermark(self, watermark: int) -> int:
        return min(self.marks[0], shifted(self.marks[1], -self.node.upper_us))

    # -- the operator interface ----------------------------------------------------
    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        rows = self.admit(port, delta.rows)
        if not rows.height:
            return None
        # A new row is matched with the other side's rows, then kept, unless that
        # side's watermark already passed its reach (it is freed at once).
        if port == 0:
            if self.outer:
                rows = self.numbered(rows)
            pairs = self._sliced(rows, self.right, 0)
            if self.outer:
                rows = self.marked(rows, pairs)
            rows, lonely = self._expire_left(rows)
            self.left = concat([self.left, rows])
            return joined(self.pairs_out(pairs), lonely)
        pairs = self._sliced(rows, self.left, 1)
        if self.outer and self.left is not None:
            self.left = self.marked(self.left, pairs)
        self.right = concat([self.right, self._unexpired_right(rows)])
        return self.pairs_out(pairs)

    def advanced(self, port: int) -> Delta | None:
        if port == 1:
            if self.left is None:
                return None
            self.left, lonely = self._expire_left(self.left)
            return lonely
        if self.right is not None:
            self.right = self._unexpired_right(self.right)
        return None

    def _expire_left(self, rows: pl.DataFrame) -> tuple[pl.DataFrame, Delta | None]:
        """Left ``rows`` still to keep: those whose interval the right watermark
        has not passed; and, under LEFT JOIN, the output rows of those that
        ended without a match."""
        node = self.node
        reach = time_us(node.left_on) + node.upper_us
        mark = self.marks[1]
        done = reach <= mark if node.upper_strict else reach < mark
        expired, kept = rows.filter(done), rows.filter(~done)
        self.freed[0] += expired.height
        if not self.outer or not expired.height:
            return kept, None
        lonely = self.ended_unmatched(expired)
        if not lonely.height:
            return kept, None
        nulls = [pl.lit(None, dtype).alias(name) for name, dtype in self.right_output.items()]
        return kept, Delta(lonely.with_columns(nulls))

    def _unexpired_right(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Right ``rows`` a left row still to come can reach (the rest are freed)."""
        node = self.node
        reach = time_us(node.right_on) - node.lower_us
        mark = self.marks[0]
        done = reach <= mark if node.lower_strict else reach < mark
        kept = rows.filter(~done)
        self.freed[1] += rows.height - kept.height
        return kept

    # -- matching --------------------------------------------------------------------
    def _sliced(self, rows: pl.DataFrame, kept: pl.DataFrame | None, port: int
                ) -> pl.DataFrame | None:
        """The pairs of new ``rows`` (arrived on ``port``) with the other side's
        ``kept`` rows: slice by slice of the rows in time order, each with the
        kept rows within its reach."""
        if kept is None or not kept.height or not rows.height:
            return None
        node = self.node
        if rows.height <= SLICE_ROWS:
            return self._pairs(rows, kept) if port == 0 else self._pairs(kept, rows)
        time, other = (node.left_on, node.right_on) if port == 0 else (node.right_on,
                                                                        node.left_on)
        # Reach on the other side's time: right time within [left + lower, left + upper].
        low, high = (node.lower_us, node.upper_us) if port == 0 else (-node.upper_us,
                                                                       -node.lower_us)
        rows = rows.sort(time)
        kept = kept.sort(other)
        kept_times = kept.get_column(other).cast(pl.Int64)
        found = []
        for first in range(0, rows.height, SLICE_ROWS):
            part = rows.slice(first, SLICE_ROWS)
            times = part.get_column(time).cast(pl.Int64)
            earliest, latest = times.min(), times.max()
            assert isinstance(earliest, int) and isinstance(latest, int)
            start = int(kept_times.search_sorted(earliest + low, side="left"))
            end = int(kept_times.search_sorted(latest + high, side="right"))
            reach = kept.slice(start, end - start)
            if reach.height:
                pairs = self._pairs(part, reach) if port == 0 else self._pairs(reach, part)
                if pairs is not None and pairs.height:
                    found.append(pairs)
        return pl.concat(found) if found else None

    def _pairs(self, left: pl.DataFrame | None, right: pl.DataFrame | None
               ) -> pl.DataFrame | None:
        """Every matching pair of a row of ``left`` and one of ``right``, laid
        out as the output (with a LEFT join's bookkeeping columns)."""
        if left is None or right is None or not left.height or not right.height:
            return None
        node = self.node
        pairs = self._ranges(left, right)
        if node.residual:
            pairs = pairs.filter(*node.residual)
        return pairs

    def _ranges(self, left: pl.DataFrame, right: pl.DataFrame) -> pl.DataFrame:
        """The pairs: for each left row the range of right rows (sorted by key,
        then time) of its key within its interval."""
        node = self.node
        keys = [f"__key{i}" for i in range(len(node.left_keys))]
        present = [pl.col(c).is_not_null() for c in (*node.left_keys, node.left_on)]
        left = left.filter(*present)
        right = right.filter(*[pl.col(c).is_not_null() for c in (*node.right_keys, node.right_on)])
        right = right.sort([*node.right_keys, node.right_on], maintain_order=True)
        targets = right.lazy().select(
            *[pl.col(c).alias(k) for c, k in zip(node.right_keys, keys, strict=True)],
            time_us(node.right_on).alias(_TIME)).with_row_index(_RIGHT_ROW)
        probes = left.lazy().select(
            *[pl.col(c).alias(k) for c, k in zip(node.left_keys, keys, strict=True)],
            (time_us(node.left_on) + node.lower_us).alias(_LOW),
            (time_us(node.left_on) + node.upper_us).alias(_HIGH)).with_row_index(_LEFT_ROW)
        first = probes.sort(_LOW).join_asof(
            targets, left_on=_LOW, right_on=_TIME, by=keys or None, strategy="forward",
            allow_exact_matches=not node.lower_strict, check_sortedness=False)
        last = probes.sort(_HIGH).join_asof(
            targets, left_on=_HIGH, right_on=_TIME, by=keys or None, strategy="backward",
            allow_exact_matches=not node.upper_strict, check_sortedness=False)
        spans = collect(
            first.select(_LEFT_ROW, pl.col(_RIGHT_ROW).alias(_FIRST))
            .join(last.select(_LEFT_ROW, pl.col(_RIGHT_ROW).alias(_LAST)), on=_LEFT_ROW)
            .filter(pl.col(_FIRST) <= pl.col(_LAST))
            .sort(_LEFT_ROW)
            .select(_LEFT_ROW, pl.int_ranges(_FIRST, pl.col(_LAST) + 1,
                                             dtype=pl.get_index_type()).alias(_RIGHT_ROW))
            .explode(_RIGHT_ROW))
        lefts = left.select(pl.all().gather(spans.get_column(_LEFT_ROW)))
        rights = right.select(pl.all().gather(spans.get_column(_RIGHT_ROW))).rename(self.renamed)
        return pl.concat([lefts, rights], how="horizontal")
