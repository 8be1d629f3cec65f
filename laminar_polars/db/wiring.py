"""How catalog definitions become connected running pieces.

A source's definition becomes a native ring; a sink gets a feed that turns
micro-batches into what it emits; a reader (a sink's feed or a view) is
attached to its input, which is either a source (read through the scheduler)
or a view (read from that view's output). The `Runtime` owns these pieces
and calls these functions under its lock.
"""

from __future__ import annotations

import polars as pl

from laminar_polars import _native
from laminar_polars.catalog import SourceDef
from laminar_polars.config import Backpressure, WaitStrategy
from laminar_polars.engine.graph import View
from laminar_polars.engine.operator import Delta
from laminar_polars.engine.readers import Reader
from laminar_polars.engine.scheduler import Scheduler
from laminar_polars.io.sink import Sink

__all__ = ["SinkFeed", "attach_reader", "detach_reader", "make_ring"]


class SinkFeed:
    """Feeds a sink from a source's micro-batches or a view's output."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def on_batch(self, delta: Delta, watermark: int) -> None:
        frame = delta.rows
        if frame.height:
            if self.sink.changelog:  # appends are inserts; upserts say which they are
                op = (pl.lit("insert") if delta.new is None else
                      pl.when(delta.new).then(pl.lit("insert")).otherwise(pl.lit("update")))
                frame = frame.with_columns(op.alias("op"))
            self.sink.emit(frame)

    def on_end(self, error: BaseException | None = None) -> None:
        self.sink.close(error=error)


def make_ring(
    definition: SourceDef, default_buffer_size: int, doorbell: _native.Doorbell
) -> _native.Ring:
    """The native ring of a source; a source without its own buffer size
    takes the database's."""
    config = definition.config
    watermark = config.watermark
    wait = WaitStrategy.parse(config.wait_strategy)
    return _native.Ring(
        definition.names,
        [c.type.code for c in definition.columns],
        [c.not_null for c in definition.columns],
        config.buffer_size or default_buffer_size,
        watermark_column=definition.names.index(watermark.column) if watermark else -1,
        watermark_delay_us=watermark.delay_us if watermark else 0,
        backpressure=Backpressure.parse(config.backpressure).value,
        wait_kind=wait.kind,
        spins=wait.spins,
        doorbell=doorbell,
    )


def attach_reader(
    views: dict[str, View], scheduler: Scheduler, input: str, reader: Reader
) -> None:
    """Make ``reader`` receive the output of source or view ``input``."""
    if input in views:
        views[input].output.add_reader(reader)
    else:
        scheduler.subscribe(input, reader)


def detach_reader(
    views: dict[str, View], scheduler: Scheduler, input: str, reader: Reader
) -> None:
    """Stop ``reader`` receiving from ``input``; a reader not attached is ignored."""
    if input in views:
        views[input].output.remove_reader(reader)
    else:
        scheduler.unsubscribe(input, reader)
