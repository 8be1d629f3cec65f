"""Session windows: a key's session grows while rows keep coming within the gap.

Sessions cannot be merged from partials (a late-arriving row can join two
sessions), so the operator keeps the projected rows of open sessions; when
the watermark moves, sessions are recomputed over those rows in one Polars
call and the ones that can no longer grow are aggregated, emitted and freed.

Durable state: ``rows`` (projected rows of open sessions) and the scalar
``watermark``. No caches.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import TIME, collect
from laminar_polars.engine.operator import Delta, State
from laminar_polars.engine.ops.windows import END, START, WindowOperator
from laminar_polars.engine.sentinels import NO_WATERMARK
from laminar_polars.plan import WindowAgg

__all__ = ["SessionWindows"]


def _over(expr: pl.Expr, keys: list[str]) -> pl.Expr:
    return expr.over(keys) if keys else expr


class SessionWindows(WindowOperator):
    """Session windows over the buffered rows of open sessions."""

    def __init__(self, node: WindowAgg) -> None:
        super().__init__(node)
        self.gap = node.window.gap_us
        self.group = [*self.keys, START, END]
        self.rows: pl.DataFrame | None = None  # projected rows of open sessions

    @property
    def state_rows(self) -> int:
        return 0 if self.rows is None else self.rows.height

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        if delta.height:
            projected = collect(self.calc.project(delta.rows.lazy(), self.keys))
            self.rows = projected if self.rows is None else pl.concat([self.rows, projected])
        return None

    def on_watermark(self, watermark: int) -> Delta | None:
        if not self._advanced(watermark) or self.rows is None:
            return None
        finals = self._close(watermark)
        return None if finals is None else Delta(finals)

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
        return self._finish(self.calc.finalize(partials.lazy(), self.group, distinct),
                            pl.col(END))

    def snapshot(self) -> State:
        return State({} if self.rows is None else {"rows": self.rows},
                     {"watermark": self.watermark})

    def restore(self, state: State) -> None:
        self.rows = state.frame("rows")
        self.watermark = state.scalar("watermark", NO_WATERMARK)
