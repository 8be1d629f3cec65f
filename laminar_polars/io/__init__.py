"""Handles over the native core: `Source` (push side), `Sink` and `Subscription` (read side)."""

from laminar_polars.io.sink import Sink, Subscription
from laminar_polars.io.source import Source

__all__ = ["Sink", "Source", "Subscription"]
