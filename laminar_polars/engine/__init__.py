"""The engine: the scheduler that drains source rings into their consumers."""

from laminar_polars.engine.scheduler import Scheduler

__all__ = ["Scheduler"]
