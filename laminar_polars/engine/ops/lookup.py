"""`LookupJoinOperator`: each batch of a stream joined with a static table as
it is when the batch is processed.

The table is read for every batch (``table()``), so replacing a registered
table (``db.register_table(name, frame, replace=True)``) changes the matches
of the rows processed after it, never of rows already emitted. One Polars
``join`` per batch; rows pass with their event time, so the output keeps the
input's watermark. No state: the table is the application's (it registers
it again after a restart).
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from laminar_polars.engine.aggregates import collect
from laminar_polars.engine.operator import Delta, Operator
from laminar_polars.plan import LookupJoin

__all__ = ["LookupJoinOperator"]


class LookupJoinOperator(Operator):
    """A `LookupJoin` node over the table ``table()`` gives."""

    def __init__(self, node: LookupJoin, table: Callable[[], pl.DataFrame]) -> None:
        self.node = node
        self.table = table
        self.rows_in = 0
        self.rows_out = 0

    @property
    def counters(self) -> dict[str, int]:
        return {"left_rows_in": self.rows_in, "matches": self.rows_out}

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        rows = delta.rows
        if not rows.height:
            return None
        self.rows_in += rows.height
        out = collect(self.node.apply(rows.lazy(), self.table().lazy()))
        self.rows_out += out.height
        return Delta(out) if out.height else None
