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

    def _finish(self, finals: pl.LazyFrame, end: pl.Expr) -> pl.DataFrame:
        """Final rows in the plan's internal layout, oldest window first."""
        as_time = pl.Datetime("us")
        framed = finals.with_columns(
            pl.col(START).cast(as_time).alias(WINDOW_START), end.cast(as_time).alias(WINDOW_END)
        ).sort(START, *self.keys, maintain_order=True)
        extra = [OP] if OP in finals.collect_schema() else []
        return collect(framed.select(*self.schema, *extra).cast(dict(self.schema)))

    def _advanced(self, watermark: int) -> bool:
        if watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True


class GridWindows(_Windows):
    """Tumbling and hopping windows over partial aggregates."""

    def __init__(self, node: WindowAgg) -> None:
        super().__init__(node)
        spec = node.window
        self.size, self.slide, self.offset = spec.size_us, spec.slide_us, spec.offset_us
        self.group = [*self.keys, START]
        # Partial rows of open windows, in arrival order. Emitting on close
        # merges them only when a window closes; updates merge every batch.
        self.parts: list[pl.DataFrame] = []
        self.next_end: int | None = None  # the earliest end of an open window
        self.distinct: list[pl.DataFrame | None] = [None] * len(self.calc.distinct)
        # Polars' group_by_dynamic starts each key's hopping windows at its
        # earliest row, so that row's time is state too.
        self.follow_first_row = spec.origin == "first_row" and spec.kind == "hop"
        self.earliest: pl.DataFrame | None = None

    @property
    def state_rows(self) -> int:
        return sum(part.height for part in self.parts)

    def process(self, frame: pl.DataFrame, watermark: int) -> pl.DataFrame | None:
        """Take one micro-batch; return the internal rows to emit, if any."""
        updates = self._absorb(frame) if frame.height else None
        closed = None
        if self._advanced(watermark) and self.next_end is not None \
                and self.next_end <= watermark:
            closed = self._close(watermark)
        return updates if self.node.emit == "on_update" else closed

    def _assign(self, projected: pl.LazyFrame) -> pl.LazyFrame:
        time = pl.col(TIME)
        last_start = (time - self.offset) // self.slide * self.slide + self.offset
        if self.slide == self.size:
            return projected.with_columns(last_start.alias(START))
        spans = -(-self.size // self.slide)  # hopping windows a row can fall into
        copies = [projected.with_columns((last_start - j * self.slide).alias(START))
                  for j in range(spans)]
        return pl.concat(copies, how="vertical").filter(pl.col(START) > time - self.size)

    def _absorb(self, frame: pl.DataFrame) -> pl.DataFrame | None:
        projected = self.calc.project(frame.lazy(), self.keys, frame)
        if self.follow_first_row:
            self._track_earliest(projected)
        windowed = self._assign(projected)
        if self.calc.distinct:
            windowed = collect(windowed).lazy()
            for slot, rows in enumerate(self.calc.distinct_rows(windowed, self.group)):
                self.distinct[slot] = self.calc.merge_distinct([self.distinct[slot], rows])
        partials = self.calc.partials(windowed, self.group)
        if partials.height:
            end = partials.get_column(START).min() + self.size  # type: ignore[operator]
            self.next_end = end if self.next_end is None else min(self.next_end, end)
        if self.node.emit != "on_update":
            self.parts.append(partials)
            if len(self.parts) > 16:
                self.parts = [self.calc.merge(self.parts, self.group)]
            return None
        merged = self.calc.merge(self.parts, self.group) if self.parts else None
        seen = mark_new(partials.select(self.group), merged, self.group)
        self.parts = [self.calc.merge([merged, partials], self.group)]
        return self._finals(self.parts[0].join(seen, on=self.group, nulls_equal=True))

    def _track_earliest(self, projected: pl.LazyFrame) -> None:
        first = collect(projected.group_by(self.keys or pl.lit(0).alias("__all"))
                        .agg(pl.col(TIME).min()))
        if self.earliest is not None:
            first = collect(pl.concat([self.earliest, first]).lazy()
                            .group_by(first.columns[:-1]).agg(pl.col(TIME).min()))
        self.earliest = first

    def _close(self, watermark: int) -> pl.DataFrame | None:
        done = pl.col(START) + self.size <= watermark
        stacked = self.parts[0] if len(self.parts) == 1 else pl.concat(self.parts)
        closed = stacked.filter(done)
        if not closed.height:
            return None
        self.parts = [stacked.filter(~done)]
        open_starts = self.parts[0].get_column(START)
        self.next_end = None if open_starts.is_empty() else open_starts.min() + self.size
        finals = self._finals(self.calc.merge_stacked(closed, self.group))
        self.distinct = [None if d is None else d.filter(~done) for d in self.distinct]
        if finals is not None:
            self._keep(finals)
        return finals

    def _open_rows(self) -> list[pl.DataFrame]:
        parts = self.parts
        if self.node.emit != "on_update" or not parts or not parts[0].height:
            return []
        finals = self._finals(self.calc.merge(parts, self.group))
        return [] if finals is None else [finals]

    def _finals(self, partials: pl.DataFrame) -> pl.DataFrame | None:
        distinct = [d for d in self.distinct if d is not None]
        keep = [OP] if OP in partials.columns else []
        finals = self.calc.finalize(partials.lazy(), self.group, distinct, keep)
        if self.follow_first_row and self.earliest is not None:
            finals = self._from_first_row(finals)
        out = self._finish(finals, pl.col(START) + self.size)
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
