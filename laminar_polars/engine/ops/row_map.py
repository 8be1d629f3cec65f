"""`RowMap`: row-wise steps (filter, select, with_columns) over each batch.

Stateless. Upserts keep their insert/update mask through the steps: it rides
along as a column while Polars runs them (a filter drops a row's mask with the
row), and is split off again. No state.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import collect
from laminar_polars.engine.operator import Delta, Operator
from laminar_polars.plan import RowMap, Step, apply_steps

__all__ = ["NEW", "RowMapOperator", "map_rows"]

NEW = "__new"  # Delta.new, as a column while rows pass through Polars


def map_rows(steps: tuple[Step, ...], rows: pl.LazyFrame, carry: bool) -> pl.LazyFrame:
    """``rows`` through ``steps``; with ``carry``, the NEW column survives selects."""
    if carry:
        steps = tuple(Step(s.kind, (*s.exprs, pl.col(NEW))) if s.kind == "select" else s
                      for s in steps)
    return apply_steps(rows, steps)


def split_new(frame: pl.DataFrame) -> Delta:
    """A frame carrying the NEW column as an upsert `Delta`."""
    return Delta(frame.drop(NEW), frame.get_column(NEW))


class RowMapOperator(Operator):
    """Applies a `RowMap` node's steps to every batch."""

    def __init__(self, node: RowMap) -> None:
        self.steps = node.steps

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        if not delta.height:
            return None
        if delta.new is None:
            return Delta(collect(map_rows(self.steps, delta.rows.lazy(), carry=False)))
        rows = delta.rows.with_columns(delta.new.alias(NEW)).lazy()
        return split_new(collect(map_rows(self.steps, rows, carry=True)))

    def apply(self, rows: pl.DataFrame) -> pl.DataFrame:
        """The steps over ``rows`` (a view's contents, for db.query)."""
        return collect(map_rows(self.steps, rows.lazy(), carry=False))
