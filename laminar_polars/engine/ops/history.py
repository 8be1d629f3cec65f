"""`History`: the rows an append-only view has emitted, kept for ``db.query``
within the view's retention.

Retention is a number of rows (the newest are kept), an event-time span behind
the view's watermark (rows whose time column is older go), or unbounded. Rows
pass through unchanged; keeping them costs a reference per batch, and the
list of batches is concatenated now and then, off the emitting path
(`settle`).

Durable state: the kept rows (``rows``). Cache: each kept frame's earliest
event time (for a time retention), recomputed on restore.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.engine.operator import Delta
>>> history = History(Retention(rows=3))
>>> for values in ([1, 2], [3, 4]):
...     _ = history.on_batch(0, Delta(pl.DataFrame({"v": values})))
>>> history.contents(history.snapshot())["v"].to_list()
[2, 3, 4]
"""

from __future__ import annotations

import polars as pl

from laminar_polars.config import Retention
from laminar_polars.engine.aggregates import time_span
from laminar_polars.engine.operator import Delta, Operator, State

__all__ = ["History"]

# Kept batches are concatenated once this many pile up (in settle()).
COMPACT_FRAMES = 64


class History(Operator):
    """The rows passing through, kept within ``retention``.

    ``time_column`` is needed for a time retention: the view's event-time
    column (``Datetime('us')``).
    """

    def __init__(self, retention: Retention, time_column: str | None = None) -> None:
        if retention.time_us is not None and time_column is None:
            raise ValueError("a retention by event time needs an event-time column")
        self.retention = retention
        self.time_column = time_column
        self.frames: list[pl.DataFrame] = []
        # Per kept frame, its earliest event time (time retention only): a
        # frame wholly inside the retention is never looked at again.
        self.earliest: list[int] = []
        self.held = 0

    @property
    def retained_rows(self) -> int:
        return self.held

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        if not delta.height:
            return None
        self.frames = [*self.frames, delta.rows]  # rebound, never mutated: snapshots stay valid
        self.earliest = [*self.earliest, self._earliest(delta.rows)]
        self.held += delta.height
        limit = self.retention.rows
        if limit is not None and self.held > limit:
            self._drop_oldest(self.held - limit)
        return delta

    def on_watermark(self, watermark: int) -> Delta | None:
        span = self.retention.time_us
        if span is not None and self.frames:
            self._drop_before(watermark - span)
        return None

    def settle(self) -> None:
        if len(self.frames) > COMPACT_FRAMES:
            self.frames = [pl.concat(self.frames)]
            self.earliest = [min(self.earliest)]

    def _earliest(self, rows: pl.DataFrame) -> int:
        if self.time_column is None:
            return 0
        span = time_span(rows.get_column(self.time_column))
        return 0 if span is None else span[0]

    def _drop_oldest(self, rows: int) -> None:
        frames, earliest = list(self.frames), list(self.earliest)
        while frames and frames[0].height <= rows:
            rows -= frames[0].height
            self.held -= frames.pop(0).height
            earliest.pop(0)
        if rows and frames:
            frames[0] = frames[0].slice(rows)
            self.held -= rows
        self.frames, self.earliest = frames, earliest

    def _drop_before(self, cutoff_us: int) -> None:
        """Rows older than ``cutoff_us`` go: only frames holding some are filtered."""
        assert self.time_column is not None
        if min(self.earliest) >= cutoff_us:
            return
        time = pl.col(self.time_column).dt.epoch("us")
        frames, earliest = [], []
        for frame, low in zip(self.frames, self.earliest, strict=True):
            if low < cutoff_us:
                frame = frame.filter(time >= cutoff_us)
                low = self._earliest(frame)
            if frame.height:
                frames.append(frame)
                earliest.append(low)
        self.frames, self.earliest = frames, earliest
        self.held = sum(frame.height for frame in frames)

    def snapshot(self) -> State:
        rows = pl.concat(self.frames, rechunk=False) if self.frames else None
        return State(frames={} if rows is None else {"rows": rows})

    def restore(self, state: State) -> None:
        rows = state.frame("rows")
        self.frames = [] if rows is None else [rows]
        self.earliest = [] if rows is None else [self._earliest(rows)]
        self.held = 0 if rows is None else rows.height

    def contents(self, state: State) -> pl.DataFrame | None:
        return state.frame("rows")
