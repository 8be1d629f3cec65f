"""What the stream-stream join operators share: two sides, each with its own
watermark, its late rows and its state.

A join is told of each side's watermark (`Operator.on_port_watermark`) and
keeps it (``marks``): matches become final, and rows are freed, by one side's
watermark, not by the minimum. A row that arrives on a side behind that
side's watermark is late: it is dropped and counted, never matched, since
the rows it could have matched may have been freed already. (A source drops
its late rows on admission, so these come only from an input that lags its
own watermark.)

Counters, for ``db.metrics()`` (`Operator.counters`): per side ``rows_in``,
``late`` and ``freed`` rows, and the ``matches`` (pairs) and ``unmatched``
(left rows emitted without a match, LEFT joins) emitted.

Frames of state are named ``left...`` and ``right...`` (`frame_port` tells a
split operator which side's keys each is split by).

A LEFT join numbers its left rows (``ID``) and keeps beside each whether it
has matched yet (``MATCHED``), so that a left row whose matches are all
final (its time bound passed by the right watermark) goes out once with
nulls if it never matched.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from laminar_polars.engine.operator import Delta, Operator, Scalar, State
from laminar_polars.engine.sentinels import CLOSED_WATERMARK, NO_WATERMARK

__all__ = ["ID", "MATCHED", "SIDES", "KeptSides", "TwoSided", "concat", "joined", "shifted",
           "split_by_time", "time_us"]

SIDES = ("left", "right")
ID = "__row_id"  # a LEFT join's left rows, numbered to mark the matched ones
MATCHED = "__row_matched"  # ... and whether each has matched yet


def time_us(column: str) -> pl.Expr:
    """An event-time column as integer microseconds (``Datetime('us')`` as is)."""
    return pl.col(column).cast(pl.Int64)


def split_by_time(rows: pl.DataFrame, column: str, before: int
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose time is before ``before``, the others), copying nothing when
    all fall on one side (the common case: a batch is wholly on time)."""
    times = rows.get_column(column).cast(pl.Int64)
    earliest, latest = times.min(), times.max()
    if not rows.height or (isinstance(earliest, int) and earliest >= before):
        return rows.clear(), rows
    if isinstance(latest, int) and latest < before:
        return rows, rows.clear()
    early = times < before
    return rows.filter(early), rows.filter(~early)


def shifted(watermark: int, delta_us: int) -> int:
    """``watermark`` moved by ``delta_us``; the sentinels stay what they are."""
    if watermark in (NO_WATERMARK, CLOSED_WATERMARK):
        return watermark
    return max(min(watermark + delta_us, CLOSED_WATERMARK - 1), NO_WATERMARK + 1)


def joined(first: Delta | None, second: Delta | None) -> Delta | None:
    """Two deltas of appended rows with the same columns, one after the other."""
    if first is None or not first.height:
        return second
    if second is None or not second.height:
        return first
    return Delta(pl.concat([first.rows, second.rows], how="vertical"))


def concat(frames: Sequence[pl.DataFrame | None]) -> pl.DataFrame | None:
    """The frames one after the other (chunks referenced, not copied)."""
    found = [f for f in frames if f is not None and f.height]
    if not found:
        return next((f for f in frames if f is not None), None)
    return found[0] if len(found) == 1 else pl.concat(found, how="vertical", rechunk=False)


class TwoSided(Operator):
    """Base of the stream-stream joins: a left (port 0) and a right (port 1)
    input with event-time columns ``times`` (None: the side has none)."""

    ports = 2

    def __init__(self, times: tuple[str | None, str | None]) -> None:
        self.times = times
        self.marks = [NO_WATERMARK, NO_WATERMARK]  # each side's watermark, as told
        self.rows_in = [0, 0]
        self.late = [0, 0]
        self.freed = [0, 0]
        self.matches = 0
        self.unmatched = 0
        self.next_id = 0  # the next left row's ID (LEFT joins)

    @property
    def counters(self) -> dict[str, int]:
        out = {"matches": self.matches, "unmatched": self.unmatched}
        for i, side in enumerate(SIDES):
            out |= {f"{side}_rows_in": self.rows_in[i], f"{side}_state_rows": self.side_rows(i),
                    f"{side}_late": self.late[i], f"{side}_freed": self.freed[i]}
        return out

    def side_rows(self, port: int) -> int:
        """Rows of side ``port`` held in the state."""
        return 0

    @property
    def state_rows(self) -> int:
        return self.side_rows(0) + self.side_rows(1)

    def frame_port(self, name: str) -> int:
        return 1 if name.startswith("right") else 0

    # -- LEFT joins: which left rows matched -------------------------------------------
    def numbered(self, rows: pl.DataFrame) -> pl.DataFrame:
        """Left rows of a LEFT join with their ``ID`` and ``MATCHED`` (False) columns."""
        first = self.next_id
        self.next_id += rows.height
        return rows.with_columns(pl.int_range(first, self.next_id, dtype=pl.Int64).alias(ID),
                                 pl.lit(False).alias(MATCHED))

    @staticmethod
    def marked(left: pl.DataFrame, pairs: pl.DataFrame | None) -> pl.DataFrame:
        """``left`` with ``MATCHED`` set on the rows ``pairs`` (which carry ``ID``) hold."""
        if pairs is None or not pairs.height:
            return left
        return left.with_columns(pl.col(MATCHED) | pl.col(ID).is_in(pairs.get_column(ID).implode()))

    def pairs_out(self, pairs: pl.DataFrame | None) -> Delta | None:
        """Matched pairs as output rows (counted, the bookkeeping columns dropped)."""
        if pairs is None or not pairs.height:
            return None
        self.matches += pairs.height
        return Delta(pairs.drop(ID, MATCHED, strict=False))

    def ended_unmatched(self, expired: pl.DataFrame) -> pl.DataFrame:
        """Of left rows whose matches are final, those that never matched
        (counted; the bookkeeping columns dropped)."""
        lonely = expired.filter(~pl.col(MATCHED)).drop(ID, MATCHED)
        self.unmatched += lonely.height
        return lonely

    def admit(self, port: int, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` arrived on ``port``: those behind its watermark are late."""
        self.rows_in[port] += rows.height
        time, mark = self.times[port], self.marks[port]
        if time is None or mark == NO_WATERMARK:
            return rows
        late, kept = split_by_time(rows, time, mark)
        self.late[port] += late.height
        return kept

    def on_port_watermark(self, port: int, watermark: int) -> Delta | None:
        if watermark <= self.marks[port]:
            return None
        self.marks[port] = watermark
        return self.advanced(port)

    def advanced(self, port: int) -> Delta | None:
        """Side ``port``'s watermark moved (it is in ``marks``): emit what it
        made final and free what it made useless."""
        return None

    @property
    def low(self) -> int:
        """The join's watermark: the minimum of the sides'."""
        return min(self.marks)

    def output_watermark(self, watermark: int) -> int:
        """How far the output's event time (the left's) can still go back:
        by default the minimum of the sides' watermarks."""
        return self.low

    def marks_state(self) -> dict[str, Scalar]:
        """The scalars of the state: both sides' watermarks, the next left ID."""
        return {"left_watermark": self.marks[0], "right_watermark": self.marks[1],
                "next_id": self.next_id}

    def restore_marks(self, state: State) -> None:
        self.marks = [state.scalar("left_watermark", NO_WATERMARK),
                      state.scalar("right_watermark", NO_WATERMARK)]
        self.next_id = state.scalar("next_id", 0)


class KeptSides(TwoSided):
    """Base of the joins that keep each side's rows as one frame, ``left`` and
    ``right`` (interval and equi-joins): their size, their rechunking, their
    snapshot. Under LEFT JOIN (``outer``) the left rows carry ``ID`` and
    ``MATCHED``."""

    def __init__(self, times: tuple[str | None, str | None], outer: bool) -> None:
        super().__init__(times)
        self.outer = outer
        self.left: pl.DataFrame | None = None
        self.right: pl.DataFrame | None = None

    def side_rows(self, port: int) -> int:
        rows = self.left if port == 0 else self.right
        return 0 if rows is None else rows.height

    def settle(self) -> None:
        # Frames grow by a chunk per batch; filtering keeps the chunks: gather them now and then.
        for name in SIDES:
            rows = getattr(self, name)
            if rows is not None and rows.n_chunks() > 64:
                setattr(self, name, rows.rechunk())

    def snapshot(self) -> State:
        frames = {name: rows for name, rows in zip(SIDES, (self.left, self.right), strict=True)
                  if rows is not None and rows.height}
        return State(frames, self.marks_state())

    def restore(self, state: State) -> None:
        self.restore_marks(state)
        self.left, self.right = state.frame("left"), state.frame("right")
        if self.outer and self.left is not None:
            # Numbered afresh: copies split across workers number their rows alike.
            self.left = self.left.with_columns(pl.int_range(pl.len(), dtype=pl.Int64).alias(ID))
            self.next_id = self.left.height
