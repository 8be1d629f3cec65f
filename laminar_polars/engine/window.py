"""Window aggregates: which rows go into which window, and when a window is done.

Grid windows (tumbling, hopping) keep one *partial* row per key and open
window; each micro-batch is assigned to windows and aggregated in one Polars
call, then merged into that state in another. When the watermark passes a
window's end, its row is finalized, emitted and freed.

Session windows cannot be merged from partials (a late-arriving row can join
two sessions), so they keep the projected rows of open sessions; when the
watermark moves, sessions are recomputed over those rows in one call and the
ones that can no longer grow are aggregated and freed.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from laminar_polars import _native
from laminar_polars.engine.aggregates import OP, TIME, Aggregates, collect, mark_new
from laminar_polars.errors import PlanError
from laminar_polars.plan import WINDOW_END, WINDOW_START, WindowAgg

__all__ = ["GridWindows", "SessionWindows", "window_operator"]

START = "__start"  # window start, integer microseconds, while a window is open
END = "__end"


def window_operator(node: WindowAgg) -> GridWindows | SessionWindows:
    if node.window.kind == "session":
        if node.emit == "on_update":
            raise PlanError("EMIT ON UPDATE is not supported for session windows: a row can "
                            "merge two sessions already emitted; use EMIT ON WINDOW CLOSE")
        return SessionWindows(node)
    return GridWindows(node)


def _over(expr: pl.Expr, keys: list[str]) -> pl.Expr:
    return expr.over(keys) if keys else expr


class _Windows:
    """What grid and session windows share: projection, finalizing, counters."""

    def __init__(self, node: WindowAgg) -> None:
        self.node = node
        self.keys = list(node.keys)
        self.calc = Aggregates(node.aggs, node.input_time_column)
        self.schema = node.internal_schema
        self.watermark = _native.NO_WATERMARK
        self.closed: list[pl.DataFrame] = []  # final rows of closed windows: the view's rows

    def contents(self) -> pl.DataFrame | None:
        """Every final row so far (and, for updates, open windows' current rows)."""
        frames = [*self.closed, *self._open_rows()]
        return pl.concat(frames) if frames else None

    def _open_rows(self) -> list[pl.DataFrame]:
        return []

    def _keep(self, finals: pl.DataFrame) -> None:
        # Rebinding (not mutating) the list keeps contents() safe to call from
        # another thread while the engine runs.
        closed = [*self.closed, finals]
        self.closed = [pl.concat(closed)] if len(closed) > 64 else closed

    def _finish(
        self, finals: pl.LazyFrame, end: pl.Expr, extra: Sequence[str] = ()
    ) -> pl.DataFrame:
        """Final rows in the plan's internal layout (plus ``extra`` columns),
        oldest window first."""
        as_time = pl.Datetime("us")
        framed = finals.with_columns(
            pl.col(START).cast(as_time).alias(WINDOW_START), end.cast(as_time).alias(WINDOW_END)
        ).sort(START, *self.keys, maintain_order=True)
        return collect(framed.select(*self.schema, *extra).cast(dict(self.schema)))

    def settle(self) -> None:
        """Tidy state after emitted rows went out (see `GridWindows.settle`)."""

    def _advanced(self, watermark: int) -> bool:
        if watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True


# Input rows wait, as they came, until this many are pending; then they are
# merged into the state in one Polars call. When windows close first, their
# pending rows are folded into the merge that emits them, so the path from a
# closing row to its readers stays a single Polars call.
ABSORB_ROWS = 1 << 12


def _micros(column: pl.Series) -> pl.Series:
    dtype = column.dtype
    if isinstance(dtype, pl.Datetime) and dtype.time_unit == "us":
        return column.to_physical()  # free, unlike dt.epoch
    return column.dt.epoch("us")


class GridWindows(_Windows):
    """Tumbling and hopping windows over partial aggregates."""

    def __init__(self, node: WindowAgg) -> None:
        super().__init__(node)
        spec = node.window
        self.size, self.slide, self.offset = spec.size_us, spec.slide_us, spec.offset_us
        self.group = [*self.keys, START]
        # Merged partials: one row per key and open window.
        self.state: pl.DataFrame | None = None
        self.state_end: int | None = None  # the earliest end of a window in the state
        self.pending: list[pl.DataFrame] = []  # input rows not merged yet, in arrival order
        self.pending_rows = 0
        self.pending_end: int | None = None  # the earliest end of a window they fall into
        self.emitted_through: int | None = None  # windows ending by here went out; settle() frees
        self.distinct: list[pl.DataFrame | None] = [None] * len(self.calc.distinct)
        # Polars' group_by_dynamic starts each key's hopping windows at its
        # earliest row, so that row's time is state too.
        self.follow_first_row = spec.origin == "first_row" and spec.kind == "hop"
        self.earliest: pl.DataFrame | None = None
        # Distinct sets and first-row origins are kept beside the partials, so
        # rows are merged before their windows close rather than folded in.
        self.can_fold = not self.calc.distinct and not self.follow_first_row

    @property
    def state_rows(self) -> int:
        return (0 if self.state is None else self.state.height) + self.pending_rows

    def process(self, frame: pl.DataFrame, watermark: int) -> pl.DataFrame | None:
        """Take one micro-batch; return the internal rows to emit, if any."""
        self.settle()  # a no-op when the view already settled after emitting
        if frame.height:
            self._hold(frame)
        if self.node.emit == "on_update":
            updates = self._update() if self.pending else None
            if self._closes(watermark):
                self._emit_closed(watermark)
                self.settle()
            return updates
        if self._closes(watermark):
            return self._emit_closed(watermark)
        if self.pending_rows >= ABSORB_ROWS:
            self._absorb()
        return None

    def settle(self) -> None:
        """Free what the last close emitted. The view calls this after the
        rows went out, which keeps the work off the closing row's path."""
        if self.emitted_through is None:
            return
        watermark, self.emitted_through = self.emitted_through, None
        if self.pending_end is not None and self.pending_end <= watermark:
            self._absorb()  # pending rows of closed windows were folded in; drop them below
        still_open = pl.col(START) + self.size > watermark
        if self.state is not None:
            self.state = self.state.filter(still_open)
            starts = self.state.get_column(START)
            self.state_end = None if starts.is_empty() else starts.min() + self.size
        self.distinct = [None if d is None else d.filter(still_open) for d in self.distinct]

    # -- rows in ----------------------------------------------------------------
    def _hold(self, frame: pl.DataFrame) -> None:
        self.pending.append(frame)
        self.pending_rows += frame.height
        earliest = _micros(frame.get_column(self.calc.time_column)).min()  # type: ignore[arg-type]
        end = self._first_end(earliest)  # type: ignore[arg-type]
        self.pending_end = end if self.pending_end is None else min(self.pending_end, end)

    def _first_end(self, time: int) -> int:
        """End of the earliest window holding ``time``: its start is the first
        grid point after ``time - size``."""
        start = (time - self.size - self.offset) // self.slide * self.slide + self.offset
        return start + self.slide + self.size

    def _pending_frame(self) -> pl.DataFrame:
        if len(self.pending) > 1:
            self.pending = [pl.concat(self.pending)]
        return self.pending[0]

    def _windowed(self, rows: pl.DataFrame) -> pl.LazyFrame:
        """Projected rows, one copy per window they fall into."""
        projected = self.calc.project(rows.lazy(), self.keys, rows)
        if self.follow_first_row:
            self._track_earliest(projected)
        return self._assign(projected)

    def _assign(self, projected: pl.LazyFrame) -> pl.LazyFrame:
        time = pl.col(TIME)
        last_start = (time - self.offset) // self.slide * self.slide + self.offset
        if self.slide == self.size:
            return projected.with_columns(last_start.alias(START))
        spans = -(-self.size // self.slide)  # hopping windows a row can fall into
        copies = [projected.with_columns((last_start - j * self.slide).alias(START))
                  for j in range(spans)]
        return pl.concat(copies, how="vertical").filter(pl.col(START) > time - self.size)

    def _absorb(self) -> pl.DataFrame:
        """Merge the pending rows into the state (and the distinct sets);
        return their own partials."""
        rows = self._pending_frame()
        self.pending, self.pending_rows, self.pending_end = [], 0, None
        windowed = self._windowed(rows)
        if self.calc.distinct:
            windowed = collect(windowed, rows.height).lazy()
            for slot, found in enumerate(self.calc.distinct_rows(windowed, self.group)):
                self.distinct[slot] = self.calc.merge_distinct([self.distinct[slot], found])
        partials = self.calc.partials(windowed, self.group, rows.height)
        self.state = self.calc.merge([self.state, partials], self.group)
        if partials.height:
            end = partials.get_column(START).min() + self.size  # type: ignore[operator]
            self.state_end = end if self.state_end is None else min(self.state_end, end)
        return partials

    # -- rows out ---------------------------------------------------------------
    def _closes(self, watermark: int) -> bool:
        if not self._advanced(watermark):
            return False
        ends = [e for e in (self.state_end, self.pending_end) if e is not None]
        return bool(ends) and min(ends) <= watermark

    def _emit_closed(self, watermark: int) -> pl.DataFrame | None:
        """Final rows of the windows the watermark closed; `settle` frees them."""
        self.emitted_through = watermark
        if self.pending and (not self.can_fold or self.pending_rows > ABSORB_ROWS):
            self._absorb()
        done = pl.col(START) + self.size <= watermark
        closing = [] if self.state is None else [self.state.lazy().filter(done)]
        if self.pending_end is not None and self.pending_end <= watermark:
            rows = self._pending_frame()
            closing.append(self.calc.row_partials(self._windowed(rows), self.group).filter(done))
            merged = self.calc.merge_lazy(pl.concat(closing, how="vertical"), self.group)
        elif closing:
            merged = closing[0]  # the state holds one row per group already
        else:
            return None
        finals = self._finals(merged)
        if finals is not None:
            self._keep(finals)
        return finals

    def _update(self) -> pl.DataFrame | None:
        """EMIT ON UPDATE: merge the pending rows at once; their groups' new values."""
        before = self.state
        partials = self._absorb()
        assert self.state is not None
        seen = mark_new(partials.select(self.group), before, self.group)
        return self._finals(self.state.lazy().join(seen.lazy(), on=self.group, nulls_equal=True),
                            keep=[OP])

    def _track_earliest(self, projected: pl.LazyFrame) -> None:
        first = collect(projected.group_by(self.keys or pl.lit(0).alias("__all"))
                        .agg(pl.col(TIME).min()))
        if self.earliest is not None:
            first = collect(pl.concat([self.earliest, first]).lazy()
                            .group_by(first.columns[:-1]).agg(pl.col(TIME).min()))
        self.earliest = first

    def _open_rows(self) -> list[pl.DataFrame]:
        if self.node.emit != "on_update" or self.state is None or not self.state.height:
            return []
        finals = self._finals(self.state.lazy())
        return [] if finals is None else [finals]

    def _finals(self, partials: pl.LazyFrame, keep: list[str] | None = None) -> pl.DataFrame | None:
        """Finalized rows of merged partials (one Polars call), None if none."""
        distinct = [d for d in self.distinct if d is not None]
        finals = self.calc.finalize(partials, self.group, distinct, keep or [])
        if self.follow_first_row and self.earliest is not None:
            finals = self._from_first_row(finals)
        out = self._finish(finals, pl.col(START) + self.size, keep or ())
        return out if out.height else None

    def _from_first_row(self, finals: pl.LazyFrame) -> pl.LazyFrame:
        assert self.earliest is not None
        earliest = pl.col(TIME)
        base = earliest // self.slide * self.slide + self.offset
        behind = (base - earliest).clip(lower_bound=0)
        first_start = (base - (behind + self.slide - 1) // self.slide * self.slide).alias("__first")
        origins = self.earliest.lazy().select(*self.earliest.columns[:-1], first_start)
        if self.keys:
            finals = finals.join(origins, on=self.keys, how="left", nulls_equal=True)
        else:
            finals = finals.join(origins.drop("__all"), how="cross")
        return finals.filter(pl.col(START) >= pl.col("__first")).drop("__first")


class SessionWindows(_Windows):
    """Session windows over the buffered rows of open sessions."""

    def __init__(self, node: WindowAgg) -> None:
        super().__init__(node)
        self.gap = node.window.gap_us
        self.group = [*self.keys, START, END]
        self.rows: pl.DataFrame | None = None  # projected rows of open sessions

    @property
    def state_rows(self) -> int:
        return 0 if self.rows is None else self.rows.height

    def process(self, frame: pl.DataFrame, watermark: int) -> pl.DataFrame | None:
        if frame.height:
            projected = collect(self.calc.project(frame.lazy(), self.keys))
            self.rows = projected if self.rows is None else pl.concat([self.rows, projected])
        if not self._advanced(watermark) or self.rows is None:
            return None
        return self._close(watermark)

    def _close(self, watermark: int) -> pl.DataFrame | None:
        assert self.rows is not None
        time = pl.col(TIME)
        starts_session = (_over(time.diff(), self.keys) >= self.gap).fill_null(True)
        session = _over(starts_session.cum_sum(), self.keys)
        sessions = collect(
            self.rows.lazy().sort([*self.keys, TIME], maintain_order=True)
            .with_columns(session.alias("__session"))
            .with_columns(_over(time.min(), [*self.keys, "__session"]).alias(START),
                          (_over(time.max(), [*self.keys, "__session"]) + self.gap).alias(END))
        )
        done = pl.col(END) <= watermark
        closed = sessions.filter(done)
        if not closed.height:
            return None
        self.rows = sessions.filter(~done).drop("__session", START, END)
        rows = closed.lazy()
        partials = self.calc.partials(rows, self.group)
        distinct = self.calc.distinct_rows(rows, self.group)
        finals = self._finish(self.calc.finalize(partials.lazy(), self.group, distinct),
                              pl.col(END))
        self._keep(finals)
        return finals
