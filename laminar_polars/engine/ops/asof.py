"""`AsofJoinOperator`: each left row with the latest right row of its key at
or before its time, emitted once that match is final.

A left row's match is final once the right watermark has passed its time: a
right row still to come is at or after the right watermark, so it cannot be
at or before the left row (``t.ts < right watermark``). Left rows wait in
``pending`` until then; those that arrive behind the right watermark go out
at once. The matching is one Polars ``join_asof`` of the rows made final
with the kept right rows, both sorted by time (right ties in arrival order,
so the later arrival wins, as in Polars).

Right rows are kept sorted by time, and freed once no left row can match
them: every left row still to be matched is at or after ``bound``, the
smaller of the left watermark and the earliest pending left row, and for
those a right row before ``bound`` is of use only if it is its key's latest
before ``bound`` (and, with a tolerance, within it of ``bound``). So the
right rows held are those of the watermark window plus one per key.

Durable state: ``left`` (pending left rows) and ``right`` (kept right rows,
sorted by time, new rows after them), with both sides' watermarks. Cache:
``floor``, how many leading right rows are already one per key (a free that
would find nothing else is skipped).
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.operator import Delta, State
from laminar_polars.engine.ops.sides import TwoSided, concat, split_by_time, time_us
from laminar_polars.engine.sentinels import NO_WATERMARK
from laminar_polars.plan import ASOF_MATCHED, AsofJoin

__all__ = ["AsofJoinOperator"]


class AsofJoinOperator(TwoSided):
    """An `AsofJoin` node's state and matching."""

    def __init__(self, node: AsofJoin) -> None:
        super().__init__((node.left_on, node.right_on))
        self.node = node
        self.pending: pl.DataFrame | None = None  # left rows whose match is not final yet
        self.right: pl.DataFrame | None = None  # kept right rows, sorted by time
        self.fresh: list[pl.DataFrame] = []  # right rows not merged into `right` yet
        self.floor = 0

    def side_rows(self, port: int) -> int:
        if port == 0:
            return 0 if self.pending is None else self.pending.height
        return (0 if self.right is None else self.right.height) + sum(f.height for f in self.fresh)

    # -- the operator interface ----------------------------------------------------
    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        rows = self.admit(port, delta.rows)
        if not rows.height:
            return None
        if port == 1:
            self.fresh = [*self.fresh, rows]
            return None
        ready, rows = split_by_time(rows, self.node.left_on, self.marks[1])
        self.pending = concat([self.pending, rows])
        return self._emit(ready)

    def advanced(self, port: int) -> Delta | None:
        if port == 0 or self.pending is None or not self.pending.height:
            return None
        ready, self.pending = split_by_time(self.pending, self.node.left_on, self.marks[1])
        self.freed[0] += ready.height  # they go out now, and leave the state
        return self._emit(ready)

    def settle(self) -> None:
        self._free()

    def _emit(self, ready: pl.DataFrame) -> Delta | None:
        """The rows of left rows ``ready`` (their matches are final)."""
        if not ready.height:
            return None
        right = self._merged()
        right_rows = right if right is not None else pl.DataFrame(schema=self.node.right.schema)
        # Left rows of equal times take the same match: their order does not matter.
        left = ready.sort(self.node.left_on)
        out = self.node.apply(left, right_rows, marked=True)
        lonely = out.get_column(ASOF_MATCHED).null_count()
        self.matches += out.height - lonely
        if self.node.how == "inner" and lonely:
            out = out.filter(pl.col(ASOF_MATCHED).is_not_null())
        elif self.node.how == "left":
            self.unmatched += lonely
        return Delta(out.drop(ASOF_MATCHED)) if out.height else None

    def _merged(self) -> pl.DataFrame | None:
        """The kept right rows with the new ones merged in, sorted by time
        (stable: earlier arrivals first among equal times)."""
        if self.fresh:
            frames = [f for f in (self.right, *self.fresh) if f is not None]
            self.right = pl.concat(frames, how="vertical").sort(self.node.right_on,
                                                                maintain_order=True)
            self.fresh = []
        return self.right

    def _free(self) -> None:
        """Drop the right rows no left row still to be matched can take."""
        bound = self.marks[0]
        if self.pending is not None and self.pending.height:
            earliest = self.pending.select(time_us(self.node.left_on).min()).item()
            bound = min(bound, earliest)
        if bound == NO_WATERMARK:
            return
        right = self._merged()
        if right is None or not right.height:
            return
        times = right.get_column(self.node.right_on).cast(pl.Int64)
        cut = int(times.search_sorted(bound, side="left"))
        if cut <= self.floor:
            return  # the rows before `bound` are one per key already
        older = right.slice(0, cut)
        tolerance = self.node.tolerance_us
        if tolerance is not None:
            older = older.filter(time_us(self.node.right_on) >= bound - tolerance)
        by = list(self.node.right_by)
        kept = older.unique(subset=by, keep="last", maintain_order=True) if by else older.tail(1)
        self.right = concat([kept, right.slice(cut)])
        self.freed[1] += cut - kept.height
        self.floor = kept.height

    # -- state -----------------------------------------------------------------------
    def snapshot(self) -> State:
        frames: dict[str, pl.DataFrame] = {}
        if self.pending is not None and self.pending.height:
            frames["left"] = self.pending
        right = concat([self.right, *self.fresh])  # fresh rows after: restore() sorts them in
        if right is not None and right.height:
            frames["right"] = right
        return State(frames, self.marks_state())

    def restore(self, state: State) -> None:
        self.restore_marks(state)
        self.pending = state.frame("left")
        right = state.frame("right")
        self.right, self.fresh, self.floor = None, [] if right is None else [right], 0
        self._merged()
