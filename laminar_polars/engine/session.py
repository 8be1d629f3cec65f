"""Session windows: a key's session grows while rows keep coming within the gap.

Sessions cannot be merged from partials (a late-arriving row can join two
sessions), so the operator keeps the projected rows of open sessions; when
the watermark moves, sessions are recomputed over those rows in one Polars
call and the ones that can no longer grow are aggregated, emitted and freed.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import TIME, Output, collect
from laminar_polars.engine.window import END, START, Windows
from laminar_polars.plan import WindowAgg

__all__ = ["SessionWindows"]


def _over(expr: pl.Expr, keys: list[str]) -> pl.Expr:
    return expr.over(keys) if keys else expr


class SessionWindows(Windows):
    """Session windows over the buffered rows of open sessions."""

    def __init__(self, node: WindowAgg, output: Output) -> None:
        super().__init__(node, output)
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
