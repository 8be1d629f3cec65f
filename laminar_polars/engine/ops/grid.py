"""Tumbling and hopping windows over merged partial aggregates.

State is one *partial* row per key and open window (`Aggregates` says what a
partial is). Input rows are not aggregated batch by batch: they wait in a
pending buffer and are merged into the state a few thousand at a time, in one
Polars call, which also finalizes the view's rows of every open window
("ready" rows). When the watermark passes a window's end:

- if no pending row falls into a closing window, its rows are a slice of the
  ready rows: no Polars call on the way from the closing row to the readers;
- otherwise the pending rows are folded into one merge that emits them.

Either way, freeing the emitted windows (`settle`) runs after the rows went
out. When to merge is chosen to keep closes on the first path: just before
the watermark reaches a pending window's end, and not in the stretch before a
close otherwise (see `GridWindows._should_absorb`).

Durable state (`snapshot`): ``state`` (merged partials), ``pending`` (input
rows not merged yet), ``distinct<i>`` (a distinct count's ``(key, window,
value)`` rows), ``earliest`` (each key's earliest time, for Polars'
first-row window origin), and the scalars ``watermark`` and ``frontier``; under
EMIT ON UPDATE also ``closed`` (rows of closed windows, for db.query). Caches,
rebuilt on restore: the ready rows and their bounds, the earliest window ends
of the state and of the pending rows, and the merge timing.

The state machine's invariants, between micro-batches (after `settle`):

1. ``state`` has at most one row per key and window start, only for windows
   whose end is after ``watermark``;
2. every input row is either merged into ``state`` (and the distinct rows) or
   held in ``pending``, never both;
3. a window whose end is at or before ``watermark`` was emitted exactly once
   (EMIT ON WINDOW CLOSE), with every row that fell into it;
4. when ``ready_fresh``, ``ready`` holds the view's rows of every window in
   ``state``, oldest window first, and ``ready_bounds`` how many leading ready
   rows end with each window start.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from laminar_polars.config import UNBOUNDED, Retention
from laminar_polars.engine.aggregates import (
    STREAMING_ROWS,
    TIME,
    Packing,
    collect,
    time_span,
)
from laminar_polars.engine.operator import Delta, State
from laminar_polars.engine.ops.row_map import NEW, split_new
from laminar_polars.engine.ops.windows import START, WindowOperator
from laminar_polars.engine.sentinels import CLOSED_WATERMARK, NO_WATERMARK
from laminar_polars.plan import WindowAgg

__all__ = ["ABSORB_ROWS", "PENDING_CAP", "GridWindows"]

# Pending rows are merged once this many wait (unless a window is about to
# close: then the merge waits for the last moment before it, see below).
ABSORB_ROWS = 1 << 12
# ... and always once this many wait, close or not, to bound memory.
PENDING_CAP = 1 << 16


class GridWindows(WindowOperator):
    """Tumbling and hopping windows over partial aggregates."""

    def __init__(self, node: WindowAgg, retention: Retention = UNBOUNDED) -> None:
        super().__init__(node, retention)
        spec = node.window
        self.size, self.slide, self.offset = spec.size_us, spec.slide_us, spec.offset_us
        self.group = [*self.keys, START]
        self.state: pl.DataFrame | None = None  # merged partials: one row per key and window
        self.state_end: int | None = None  # the earliest end of a window in the state
        self.pending: list[pl.DataFrame] = []  # input rows not merged yet, in arrival order
        self.pending_count = 0
        self.pending_end: int | None = None  # the earliest end of a window they fall into
        self.frontier = NO_WATERMARK  # the latest event time seen
        self.caught_up_for: int | None = None  # pending_end of the last merge before a close
        self.emitted_through: int | None = None  # windows ending by here went out; settle() frees
        self.distinct: list[pl.DataFrame | None] = [None] * len(self.calc.distinct)
        # Polars' group_by_dynamic starts each key's hopping windows at its
        # earliest row, so that row's time is state too.
        self.follow_first_row = spec.origin == "first_row" and spec.kind == "hop"
        self.earliest: pl.DataFrame | None = None
        # Distinct sets and first-row origins are kept beside the partials, so
        # rows are merged before their windows close rather than folded in.
        self.can_fold = not self.calc.distinct and not self.follow_first_row
        # The view's rows of every window in the state, oldest window first:
        # made by each merge, so most closes only slice it. ready_bounds has,
        # per window start, how many leading ready rows end with that window.
        self.keeps_ready = node.emit != "on_update"
        self.ready: pl.DataFrame | None = None
        self.ready_bounds: list[tuple[int, int]] = []
        self.ready_fresh = False

    @property
    def state_rows(self) -> int:
        return 0 if self.state is None else self.state.height

    @property
    def pending_rows(self) -> int:
        return self.pending_count

    # -- the operator interface ----------------------------------------------------
    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        """Hold the rows; under EMIT ON UPDATE, merge them and return the
        changed windows' rows."""
        self.settle()  # a no-op when the graph already settled after the last batch
        if not delta.height:
            return None
        self._hold(delta.rows)
        if self.node.emit == "on_update":
            return self._update()
        return None

    def on_watermark(self, watermark: int) -> Delta | None:
        """The windows the watermark closed (EMIT ON WINDOW CLOSE). Their rows
        are usually a slice of the ready rows: no Polars query runs here."""
        self.settle()
        if not self._closes(watermark):
            return None
        finals = self._emit_closed(watermark)
        if self.node.emit == "on_update":  # their last update already went out
            self.settle()
            return None
        return None if finals is None else Delta(finals)

    def settle(self) -> None:
        """After the rows went out: free the windows the last close emitted,
        and merge the pending rows if it is time to (`_should_absorb`). Both
        are kept off the path from a closing row to the readers."""
        if self.emitted_through is not None:
            self._free_emitted(self.emitted_through)
        if self.keeps_ready and self._should_absorb(self.watermark):
            self._absorb()

    def _free_emitted(self, watermark: int) -> None:
        self.emitted_through = None
        if self.pending_end is not None and self.pending_end <= watermark:
            self._absorb()  # pending rows of closed windows were folded in; dropped below
        still_open = pl.col(START) + self.size > watermark
        if self.state is not None:
            self.state = self.state.filter(still_open)
            self.state_end = self._earliest_end(self.state)
        self.distinct = [None if d is None else d.filter(still_open) for d in self.distinct]
        if self.ready is not None:
            closed = self._closed_count(watermark)
            self.ready = self.ready.slice(closed)
            self.ready_bounds = [(start, rows - closed) for start, rows in self.ready_bounds
                                 if rows > closed]
        if self.closed is not None:
            self.closed.settle()

    # -- rows in ----------------------------------------------------------------
    def _hold(self, frame: pl.DataFrame) -> None:
        self.pending = [*self.pending, frame]
        self.pending_count += frame.height
        time_column = self.calc.time_column
        assert time_column is not None, "a window aggregate has an event-time column"
        span = time_span(frame.get_column(time_column))
        assert span is not None, "event times are never null"
        low, high = span
        end = self._first_end(low)
        self.pending_end = end if self.pending_end is None else min(self.pending_end, end)
        self.frontier = max(self.frontier, high)

    def _first_end(self, time: int) -> int:
        """End of the earliest window holding ``time``: its start is the first
        grid point after ``time - size``."""
        start = (time - self.size - self.offset) // self.slide * self.slide + self.offset
        return start + self.slide + self.size

    def _should_absorb(self, watermark: int) -> bool:
        """Whether to merge the pending rows now, the watermark at ``watermark``.

        A merge costs a few Polars calls (milliseconds): a close that comes
        while one runs waits for it. So pending rows are merged (1) once, just
        before the watermark reaches their earliest window's end, halfway
        through the lag between event time and watermark: the rows of a
        closing window are in by then, unless more out of order than half the
        delay, and the close only slices ready rows; (2) every `ABSORB_ROWS`
        rows, but not while a close is within the lag; (3) always at
        `PENDING_CAP` rows.
        """
        if not self.pending or watermark in (NO_WATERMARK, CLOSED_WATERMARK):
            return self.pending_count >= PENDING_CAP
        assert self.pending_end is not None
        lag = max(self.frontier - watermark, 0)
        if watermark >= self.pending_end - lag // 2 and self.caught_up_for != self.pending_end:
            self.caught_up_for = self.pending_end
            return True
        return self.pending_count >= PENDING_CAP or (
            self.pending_count >= ABSORB_ROWS and watermark < self._next_close() - lag)

    def _next_close(self) -> int:
        return min(e for e in (self.state_end, self.pending_end) if e is not None)

    def _pending_frame(self) -> pl.DataFrame:
        if len(self.pending) > 1:
            self.pending = [pl.concat(self.pending)]
        return self.pending[0]

    def _windowed(self, rows: pl.DataFrame, packing: Packing | None = None) -> pl.LazyFrame:
        """Projected rows, one copy per window they fall into."""
        projected = self.calc.project(rows.lazy(), self.keys, packing)
        if self.follow_first_row:
            self._track_earliest(projected)
        time = pl.col(TIME)
        last_start = (time - self.offset) // self.slide * self.slide + self.offset
        if self.slide == self.size:
            return projected.with_columns(last_start.alias(START))
        spans = -(-self.size // self.slide)  # hopping windows a row can fall into
        copies = [projected.with_columns((last_start - j * self.slide).alias(START))
                  for j in range(spans)]
        return pl.concat(copies, how="vertical").filter(pl.col(START) > time - self.size)

    def _track_earliest(self, projected: pl.LazyFrame) -> None:
        first = collect(projected.group_by(self.keys or pl.lit(0).alias("__all"))
                        .agg(pl.col(TIME).min()))
        if self.earliest is not None:
            first = collect(pl.concat([self.earliest, first]).lazy()
                            .group_by(first.columns[:-1]).agg(pl.col(TIME).min()))
        self.earliest = first

    def _absorb(self) -> pl.DataFrame | None:
        """Merge the pending rows into the state (and distinct sets), making
        the ready rows in the same Polars call. For EMIT ON UPDATE, return the
        rows' own partials (which groups they touched)."""
        rows = self._pending_frame()
        self.pending, self.pending_end = [], None  # pending_count drops once they are merged
        packing = self.calc.packing(rows)
        windowed = self._windowed(rows, packing)
        if self.calc.distinct:
            windowed = collect(windowed, rows.height).lazy()
            for slot, found in enumerate(self.calc.distinct_rows(windowed, self.group)):
                self.distinct[slot] = self.calc.merge_distinct([self.distinct[slot], found])
        partials = self.calc.partials_lazy(windowed, self.group, packing)
        if rows.height >= STREAMING_ROWS:  # the big aggregation on the streaming engine
            partials = collect(partials, rows.height).lazy()
        merged = partials if self.state is None else self.calc.merge_lazy(
            pl.concat([self.state.lazy(), partials]), self.group)
        # The ready rows (emit on close) or the batch's partials (emit on
        # update) come out of the same call; shared subplans run once.
        extra = self._finals_lazy(merged, carry=[START]) if self.keeps_ready else partials
        self.state, out = pl.collect_all([merged, extra], engine="in-memory")
        self.pending_count = 0
        self.state_end = self._earliest_end(self.state)
        if self.keeps_ready:
            self._make_ready(out)
            return None
        return out

    # -- rows out ---------------------------------------------------------------
    def _closes(self, watermark: int) -> bool:
        if not self._advanced(watermark):
            return False
        ends = [e for e in (self.state_end, self.pending_end) if e is not None]
        return bool(ends) and min(ends) <= watermark

    def _emit_closed(self, watermark: int) -> pl.DataFrame | None:
        """The view's rows of the windows the watermark closed; `settle` frees them."""
        self.emitted_through = watermark
        folds = self.pending_end is not None and self.pending_end <= watermark
        if folds and (not self.can_fold or self.pending_count > ABSORB_ROWS):
            self._absorb()
            folds = False
        if folds:  # rows of closing windows are pending: merge them in, one Polars call
            done = pl.col(START) + self.size <= watermark
            closing = [] if self.state is None else [self.state.lazy().filter(done)]
            rows = self._pending_frame()
            closing.append(self.calc.row_partials(self._windowed(rows), self.group).filter(done))
            self.ready_fresh = False  # the state misses those rows until settle() merges them
            finals = self._finals(self.calc.merge_lazy(pl.concat(closing), self.group))
        elif self.ready_fresh:
            finals = self._ready_through(watermark)
        elif self.state is not None:  # the state holds one row per group already
            finals = self._finals(self.state.lazy().filter(pl.col(START) + self.size <= watermark))
        else:
            return None
        if finals is not None:
            self._keep_closed(finals)
        return finals

    def _make_ready(self, rows: pl.DataFrame) -> None:
        """Keep the ready rows (made with START last) and where each window's rows end."""
        starts = rows.get_column(START).to_numpy()  # sorted; int64 without nulls: no copy
        firsts = np.flatnonzero(np.diff(starts)) + 1
        self.ready_bounds = [(int(starts[end - 1]), int(end))
                             for end in (*firsts.tolist(), len(starts))] if len(starts) else []
        self.ready = pl.DataFrame(rows.get_columns()[:-1])
        self.ready_fresh = True

    # The emitting path makes no Polars query (each costs ~70 us here even
    # when eager): counting is a walk over a few window bounds, emitting a slice.
    def _closed_count(self, watermark: int) -> int:
        """How many leading ready rows belong to windows ending by ``watermark``."""
        count = 0
        for start, rows in self.ready_bounds:
            if start + self.size > watermark:
                break
            count = rows
        return count

    def _ready_through(self, watermark: int) -> pl.DataFrame | None:
        count = self._closed_count(watermark)
        return None if self.ready is None or not count else self.ready.slice(0, count)

    def _earliest_end(self, state: pl.DataFrame) -> int | None:
        start = state.get_column(START).min()
        if start is None:
            return None
        assert isinstance(start, int)  # START is int64 microseconds
        return start + self.size

    def _update(self) -> Delta | None:
        """EMIT ON UPDATE: merge the pending rows at once; their groups' new values."""
        before = self.state
        partials = self._absorb()
        assert self.state is not None and partials is not None
        touched = partials.lazy().select(self.group)
        if before is None:
            marked = touched.with_columns(pl.lit(True).alias(NEW))
        else:
            known = before.lazy().select(*self.group, pl.lit(False).alias(NEW))
            marked = touched.join(known, on=self.group, how="left", nulls_equal=True,
                                  maintain_order="left").with_columns(pl.col(NEW).fill_null(True))
        rows = self._finals(self.state.lazy().join(marked, on=self.group, nulls_equal=True),
                            carry=[NEW])
        return None if rows is None else split_new(rows)

    def _finals_lazy(self, partials: pl.LazyFrame, carry: Sequence[str] = ()) -> pl.LazyFrame:
        """The view's rows from merged partials, plus the ``carry`` columns of the partials."""
        distinct = [d for d in self.distinct if d is not None]
        keep = [c for c in carry if c not in self.group]
        finals = self.calc.finalize(partials, self.group, distinct, keep)
        if self.follow_first_row and self.earliest is not None:
            finals = self._from_first_row(finals, self.earliest)
        return self._finish_lazy(finals, pl.col(START) + self.size, carry)

    def _finals(self, partials: pl.LazyFrame, carry: Sequence[str] = ()) -> pl.DataFrame | None:
        out = collect(self._finals_lazy(partials, carry))
        return out if out.height else None

    def _from_first_row(self, finals: pl.LazyFrame, earliest_rows: pl.DataFrame) -> pl.LazyFrame:
        """Only the windows Polars' group_by_dynamic makes: per key, from the
        one at or before its earliest row (``earliest_rows``) on."""
        earliest = pl.col(TIME)
        base = earliest // self.slide * self.slide + self.offset
        behind = (base - earliest).clip(lower_bound=0)
        first_start = (base - (behind + self.slide - 1) // self.slide * self.slide).alias("__first")
        origins = earliest_rows.lazy().select(*earliest_rows.columns[:-1], first_start)
        if self.keys:
            finals = finals.join(origins, on=self.keys, how="left", nulls_equal=True)
        else:
            finals = finals.join(origins.drop("__all"), how="cross")
        return finals.filter(pl.col(START) >= pl.col("__first")).drop("__first")

    # -- state -----------------------------------------------------------------------
    def snapshot(self) -> State:
        frames: dict[str, pl.DataFrame] = {}
        if self.state is not None:
            frames["state"] = self.state
        if self.pending:
            frames["pending"] = pl.concat(self.pending, rechunk=False)
        for slot, rows in enumerate(self.distinct):
            if rows is not None:
                frames[f"distinct{slot}"] = rows
        if self.earliest is not None:
            frames["earliest"] = self.earliest
        closed = self._closed_state().frame("rows")
        if closed is not None:
            frames["closed"] = closed
        return State(frames, {"watermark": self.watermark, "frontier": self.frontier})

    def restore(self, state: State) -> None:
        self.watermark = state.scalar("watermark", NO_WATERMARK)
        self.frontier = state.scalar("frontier", NO_WATERMARK)
        self.state = state.frame("state")
        self.state_end = None if self.state is None else self._earliest_end(self.state)
        self.pending, self.pending_count, self.pending_end = [], 0, None
        pending = state.frame("pending")
        if pending is not None and pending.height:
            frontier = self.frontier
            self._hold(pending)
            self.frontier = frontier
        self.distinct = [state.frame(f"distinct{slot}") for slot in range(len(self.distinct))]
        self.earliest = state.frame("earliest")
        self.caught_up_for = self.emitted_through = None
        self.ready, self.ready_bounds, self.ready_fresh = None, [], False
        if self.closed is not None:
            closed = state.frame("closed")
            self.closed.restore(State({} if closed is None else {"rows": closed}))

    def contents(self, state: State) -> pl.DataFrame | None:
        """EMIT ON UPDATE: the rows of closed windows and the current rows of
        open ones (those of the pending rows included)."""
        if self.closed is None:
            return None
        frames = self._closed_rows(state)
        open_rows = self._open_rows(state)
        if open_rows is not None:
            frames.append(open_rows)
        return pl.concat(frames) if frames else None

    def _open_rows(self, state: State) -> pl.DataFrame | None:
        partials = state.frame("state")
        if partials is None or not partials.height:
            return None
        distinct = [d for d in (state.frame(f"distinct{slot}")
                                for slot in range(len(self.distinct))) if d is not None]
        finals = self.calc.finalize(partials.lazy(), self.group, distinct)
        earliest = state.frame("earliest")
        if self.follow_first_row and earliest is not None:
            finals = self._from_first_row(finals, earliest)
        out = collect(self._finish_lazy(finals, pl.col(START) + self.size))
        return out if out.height else None
