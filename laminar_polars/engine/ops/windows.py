"""What the window operators share: the window columns, finishing final rows
into the view's rows, the watermark, and (EMIT ON UPDATE) the rows of closed
windows kept for ``db.query``.

Grid windows (tumbling, hopping) are in `grid`, sessions in `session`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from laminar_polars.config import UNBOUNDED, Retention
from laminar_polars.engine.aggregates import Aggregates, collect
from laminar_polars.engine.operator import Delta, Operator, State
from laminar_polars.engine.ops.history import History
from laminar_polars.engine.ops.keyed import finish
from laminar_polars.engine.sentinels import CLOSED_WATERMARK, NO_WATERMARK
from laminar_polars.plan import WINDOW_END, WINDOW_START, WindowAgg

__all__ = ["END", "START", "WindowOperator"]

START = "__start"  # window start, integer microseconds, while a window is open
END = "__end"


class WindowOperator(Operator):
    """Base of the window operators. Under EMIT ON UPDATE the view's rows of
    closed windows are kept here (within ``retention``); under EMIT ON WINDOW
    CLOSE the view keeps what it emitted itself (a `History` after it)."""

    def __init__(self, node: WindowAgg, retention: Retention = UNBOUNDED) -> None:
        self.node = node
        self.keys = list(node.keys)
        self.calc = Aggregates(node.aggs, node.input_time_column)
        self.schema = node.internal_schema
        self.watermark = NO_WATERMARK
        self.closed = History(retention, node.time_output) if node.emit == "on_update" else None
        # How far the output's event time (a window labelled by its start) trails.
        self.lag = node.time_lag_us if node.time_column is not None else 0

    @property
    def retained_rows(self) -> int:
        return 0 if self.closed is None else self.closed.retained_rows

    def output_watermark(self, watermark: int) -> int:
        if watermark in (NO_WATERMARK, CLOSED_WATERMARK):
            return watermark
        return watermark - self.lag

    def _keep_closed(self, finals: pl.DataFrame) -> None:
        """EMIT ON UPDATE: the final rows of windows that closed, for db.query."""
        if self.closed is not None and finals.height:
            self.closed.on_batch(0, Delta(finals))
            self.closed.on_watermark(self.watermark)

    def _finish_lazy(
        self, finals: pl.LazyFrame, end: pl.Expr, extra: Sequence[str] = ()
    ) -> pl.LazyFrame:
        """The view's rows from final aggregates (plus ``extra`` columns),
        oldest window first."""
        as_time = pl.Datetime("us")
        framed = finals.with_columns(
            pl.col(START).cast(as_time).alias(WINDOW_START), end.cast(as_time).alias(WINDOW_END)
        ).sort(START, *self.keys, maintain_order=True)
        internal = framed.select(*self.schema, *extra).cast(self.schema)
        return finish(self.node, internal, tuple(extra))

    def _finish(
        self, finals: pl.LazyFrame, end: pl.Expr, extra: Sequence[str] = ()
    ) -> pl.DataFrame:
        return collect(self._finish_lazy(finals, end, extra))

    def _advanced(self, watermark: int) -> bool:
        if watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True

    def _closed_state(self) -> State:
        return State() if self.closed is None else self.closed.snapshot()

    def _closed_rows(self, state: State) -> list[pl.DataFrame]:
        rows = state.frame("closed")
        return [] if rows is None else [rows]
