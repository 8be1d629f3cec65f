"""Reader edges: how a producer of micro-batches hands them on, and where a
failure stops.

A reader is anything with ``on_batch(delta, watermark)`` and
``on_end(error=None)``: a view, or the feed of a sink. Both producers of
batches, the scheduler (for each source) and a view (for its output), hand a
batch to their readers with :func:`deliver`. A reader whose ``on_batch``
raises is cut off at that edge: it is removed from its producer's readers,
the engine is told (it closes every source), and the reader is ended with
the error, so everything downstream of it ends with it; the producer's other
readers go on. The failure is so charged to the reader that raised, never to
its producer, however deep the stack of views is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from laminar_polars.engine.operator import Delta

__all__ = ["Reader", "deliver"]


class Reader(Protocol):
    def on_batch(self, delta: Delta, watermark: int) -> None: ...

    def on_end(self, error: BaseException | None = None) -> None: ...


def deliver(
    readers: list[Reader],
    delta: Delta,
    watermark: int,
    on_failure: Callable[[BaseException], None],
) -> None:
    """Hand ``delta`` to every reader in ``readers``.

    A reader that raises is removed from ``readers``, reported to
    ``on_failure`` (the engine's), then ended with its error; the others
    still get the rows.
    """
    for reader in list(readers):
        try:
            reader.on_batch(delta, watermark)
        except Exception as error:
            if reader in readers:
                readers.remove(reader)
            try:
                on_failure(error)  # first: the sources close before anything ends
            finally:
                reader.on_end(error)
