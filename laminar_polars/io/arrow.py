"""What a ring hands the engine, as one Polars frame.

A ring's `take` gives segments in push order: `ArrowChunk`s of rows pushed one
by one, and `QueuedBatch`es (a ``push_arrow`` table, or a ``push_batch`` built
as an Arrow batch) with the mask of their on-time rows. This module turns
them into one frame of the source's schema on the engine thread, so no Arrow
kernel runs on a pushing thread.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from laminar_polars import _native

__all__ = ["frame_of", "strings_as_views"]


def strings_as_views(table: pa.Table) -> pa.Table:
    """String columns as Arrow string_view, which Polars imports without a
    copy. Converting first (pyarrow, ~2 ns a row) and importing beats letting
    Polars import UTF-8 (~5 ns a row, it copies every string)."""
    for i, field in enumerate(table.schema):
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.string_view()))
    return table


def _frame(data: Any) -> pl.DataFrame:
    if isinstance(data, pa.Table):  # queued by push_arrow
        frame = pl.from_arrow(strings_as_views(data))
        assert isinstance(frame, pl.DataFrame)  # typed DataFrame | Series; a table is a frame
        return frame
    return pl.DataFrame(data)  # an ArrowChunk: imported without a copy


def _segment_frame(segment: Any) -> pl.DataFrame:
    if not isinstance(segment, _native.QueuedBatch):
        return _frame(segment)
    frame = _frame(segment.data)
    if segment.keep is not None:  # the rows that were on time when it was admitted
        frame = frame.filter(pl.Series(np.frombuffer(segment.keep, dtype=np.bool_)))
    return frame


def frame_of(segments: Sequence[Any], schema: pl.Schema) -> pl.DataFrame:
    """One frame of ``schema`` from the segments a ring hands out, in order."""
    frames = [_segment_frame(segment) for segment in segments]
    frames = [f if f.schema == schema else f.cast(schema) for f in frames]
    if len(frames) == 1:
        return frames[0]
    return pl.concat(frames, how="vertical", rechunk=False)
