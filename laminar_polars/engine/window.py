"""What every window operator shares: the window columns, finishing final
rows into the view's rows, the rows kept for ``db.query``, the watermark.

Grid windows (tumbling, hopping) are in `grid`, sessions in `session`.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from laminar_polars import _native
from laminar_polars.engine.aggregates import Aggregates, Output, collect
from laminar_polars.plan import WINDOW_END, WINDOW_START, WindowAgg

__all__ = ["END", "START", "Windows"]

START = "__start"  # window start, integer microseconds, while a window is open
END = "__end"


class Windows:
    """Base of the window operators: ``process(frame, watermark)`` takes a
    micro-batch and returns the view's rows to emit, if any; ``settle()``
    tidies state once those rows went out; ``contents()`` is every row so far."""

    pending_rows = 0  # input rows held before they reach the state

    def __init__(self, node: WindowAgg, output: Output) -> None:
        self.node = node
        self.output = output
        self.keys = list(node.keys)
        self.calc = Aggregates(node.aggs, node.input_time_column)
        self.schema = node.internal_schema
        self.watermark = _native.NO_WATERMARK
        self.closed: list[pl.DataFrame] = []  # the view's rows of closed windows

    def contents(self) -> pl.DataFrame | None:
        """The view's rows so far (and, for updates, open windows' current rows)."""
        frames = [*self.closed, *self._open_rows()]
        return pl.concat(frames) if frames else None

    def settle(self) -> None:
        """Tidy state after emitted rows went out (see `GridWindows.settle`)."""
        self._compact_closed()

    def _open_rows(self) -> list[pl.DataFrame]:
        return []

    def _keep(self, finals: pl.DataFrame) -> None:
        # Rebinding (not mutating) the list keeps contents() safe to call from
        # another thread while the engine runs.
        self.closed = [*self.closed, finals]

    def _compact_closed(self) -> None:
        """Concatenate the kept rows now and then; settle() calls this, after
        the rows went out, since a concatenation of all rows so far is slow."""
        if len(self.closed) > 64:
            self.closed = [pl.concat(self.closed)]

    def _finish_lazy(
        self, finals: pl.LazyFrame, end: pl.Expr, extra: Sequence[str] = ()
    ) -> pl.LazyFrame:
        """The view's rows from final aggregates (plus ``extra`` columns),
        oldest window first."""
        as_time = pl.Datetime("us")
        framed = finals.with_columns(
            pl.col(START).cast(as_time).alias(WINDOW_START), end.cast(as_time).alias(WINDOW_END)
        ).sort(START, *self.keys, maintain_order=True)
        internal = framed.select(*self.schema, *extra).cast(dict(self.schema))
        return self.output(internal, extra)

    def _finish(
        self, finals: pl.LazyFrame, end: pl.Expr, extra: Sequence[str] = ()
    ) -> pl.DataFrame:
        return collect(self._finish_lazy(finals, end, extra))

    def _advanced(self, watermark: int) -> bool:
        if watermark <= self.watermark:
            return False
        self.watermark = watermark
        return True
