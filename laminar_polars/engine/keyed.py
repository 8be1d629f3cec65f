"""Continuous aggregates: one row per key, updated in place.

Each micro-batch is aggregated into partials in one Polars call and merged into
the state in another; the keys it touched are emitted with their new values
(upserts), marked 'insert' the first time a key is seen and 'update' after.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import OP, Aggregates, Output, collect, mark_new
from laminar_polars.plan import KeyedAgg

__all__ = ["KeyedAggregate"]

ALL = "__all"  # the one group of an aggregate without GROUP BY


class KeyedAggregate:
    pending_rows = 0  # every batch goes straight into the state
    def __init__(self, node: KeyedAgg, output: Output) -> None:
        self.node = node
        self.output = output
        self.keys = list(node.keys)
        self.group = self.keys or [ALL]
        # Event order needs a time column; arrival order (the state's row order) does not.
        time_column = node.input.time_column
        self.calc = Aggregates(node.aggs, time_column)
        self.schema = node.internal_schema
        self.state: pl.DataFrame | None = None
        self.distinct: list[pl.DataFrame | None] = [None] * len(self.calc.distinct)

    @property
    def state_rows(self) -> int:
        return 0 if self.state is None else self.state.height

    def process(self, frame: pl.DataFrame, watermark: int) -> pl.DataFrame | None:
        if not frame.height:
            return None
        rows = frame.lazy() if self.keys else frame.lazy().with_columns(pl.lit(True).alias(ALL))
        packing = self.calc.packing(frame)
        projected = collect(self.calc.project(rows, self.group, packing))
        partials = self.calc.partials(projected.lazy(), self.group, packing=packing)
        seen = mark_new(partials.select(self.group), self.state, self.group)
        self.state = self.calc.merge([self.state, partials], self.group)
        for slot, found in enumerate(self.calc.distinct_rows(projected.lazy(), self.group)):
            self.distinct[slot] = self.calc.merge_distinct([self.distinct[slot], found])
        return self._finals(self.state.join(seen, on=self.group, nulls_equal=True))

    def settle(self) -> None:
        """Nothing to tidy: the state is the answer."""

    def contents(self) -> pl.DataFrame | None:
        if self.state is None:
            return None
        return self._finals(self.state.with_columns(pl.lit("update").alias(OP))).drop(OP)

    def _finals(self, partials: pl.DataFrame) -> pl.DataFrame:
        distinct = [d for d in self.distinct if d is not None]
        finals = self.calc.finalize(partials.lazy(), self.group, distinct, [OP])
        internal = finals.select(*self.schema, OP).cast(dict(self.schema))
        return collect(self.output(internal, [OP]))
