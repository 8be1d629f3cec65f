"""`KeyedAggregate`: a continuous aggregate, one row per key, updated in place.

Each batch is aggregated into one partial row per key it touches (O(batch));
those keys' stored partials are found in a `KeyedState` (O(batch), amortized)
and merged with the batch's; the merged rows replace them and, finalized, go
downstream as upserts, marked new where the key was not stored before. The
cost of a batch grows with the batch, not with the keys held.

A distinct count (``count(DISTINCT x)``) keeps its distinct ``(key, value)``
pairs in a `KeyedState` of their own; the batch's pairs not stored yet are
new, and each key's count of them is added to the count in its row.

Durable state: the partial rows (``partials``) and each distinct count's pairs
(``distinct<i>``), each as a KeyedState's two parts. Caches: the key hashes.
"""

from __future__ import annotations

import polars as pl

from laminar_polars.engine.aggregates import Aggregates, collect
from laminar_polars.engine.keyed_state import HASH, KeyedState
from laminar_polars.engine.operator import Delta, Operator, State
from laminar_polars.engine.ops.row_map import NEW, split_new
from laminar_polars.plan import KeyedAgg, WindowAgg

__all__ = ["ALL", "KeyedAggregate", "finish"]

ALL = "__all"  # the one group of an aggregate without GROUP BY
VALUE = "__value"  # a distinct count's value column


def finish(node: KeyedAgg | WindowAgg, internal: pl.LazyFrame,
           carry: tuple[str, ...] = ()) -> pl.LazyFrame:
    """A node's rows from its internal frame: HAVING, then its output columns
    (and ``carry`` columns)."""
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(*node.output, *carry)


class KeyedAggregate(Operator):
    """A `KeyedAgg` node's state and arithmetic."""

    def __init__(self, node: KeyedAgg) -> None:
        self.node = node
        self.keys = list(node.keys)
        self.group = self.keys or [ALL]
        # Event order needs a time column; arrival order (the state's row order) does not.
        self.calc = Aggregates(node.aggs, node.input.time_column)
        self.schema = node.internal_schema
        self.partials = KeyedState(self.group)
        self.distinct = [KeyedState([*self.group, VALUE]) for _ in self.calc.distinct]
        self.counts = [node.aggs[i].name for i in self.calc.distinct]

    @property
    def state_rows(self) -> int:
        return len(self.partials)

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        frame = delta.rows
        if not frame.height:
            return None
        rows = frame.lazy() if self.keys else frame.lazy().with_columns(pl.lit(True).alias(ALL))
        packing = self.calc.packing(frame)
        projected = collect(self.calc.project(rows, self.group, packing))
        batch = self.partials.hashed(self.calc.partials(projected.lazy(), self.group,
                                                        packing=packing))
        stored = self.partials.find(batch)
        merged = batch if stored is None else self._merge(stored, batch)
        if self.counts:
            merged = self._count_distinct(projected, stored, merged)
        self.partials.upsert(merged)
        marked = merged.lazy().with_columns(pl.lit(True).alias(NEW))
        if stored is not None:  # keys stored before are updates
            known = stored.lazy().select(*self.group, pl.lit(False).alias(NEW))
            marked = merged.lazy().join(known, on=self.group, how="left", nulls_equal=True,
                                        maintain_order="left").with_columns(
                pl.col(NEW).fill_null(True))
        finals = self.calc.finalize(marked, self.group, None, [NEW])
        return split_new(collect(self._finish(finals, (NEW,))))

    def _merge(self, stored: pl.DataFrame, batch: pl.DataFrame) -> pl.DataFrame:
        """The batch's partials merged into the stored ones of the same keys."""
        stacked = pl.concat([stored.select(batch.columns), batch], how="vertical")
        return collect(self.calc.merge_lazy(stacked.lazy(), [*self.group, HASH]))

    def _count_distinct(self, projected: pl.DataFrame, stored: pl.DataFrame | None,
                        merged: pl.DataFrame) -> pl.DataFrame:
        """``merged`` with each distinct count: the stored count plus the key's
        values not seen before."""
        counts = []
        for slot, pairs in enumerate(self.calc.distinct_rows(projected.lazy(), self.group)):
            seen = self.distinct[slot].find(pairs)
            fresh = pairs if seen is None else pairs.join(
                seen.select(*self.group, VALUE), on=[*self.group, VALUE], how="anti",
                nulls_equal=True)
            self.distinct[slot].upsert(fresh)
            agg = self.node.aggs[self.calc.distinct[slot]]
            function = self.calc.functions[self.calc.distinct[slot]]
            counts.append(fresh.lazy().group_by(self.group).agg(
                function.count_distinct(agg, pl.col(VALUE)).alias(f"{agg.name}+")))
        earlier = (stored.select(*self.group, *self.counts) if stored is not None
                   else pl.DataFrame(schema={**{g: merged.schema[g] for g in self.group},
                                             **dict.fromkeys(self.counts, pl.UInt32)}))
        out = merged.lazy().join(earlier.lazy(), on=self.group, how="left", nulls_equal=True)
        for name, added in zip(self.counts, counts, strict=True):
            out = out.join(added, on=self.group, how="left", nulls_equal=True).with_columns(
                (pl.col(name).fill_null(0) + pl.col(f"{name}+").fill_null(0)).cast(pl.UInt32)
                .alias(name)).drop(f"{name}+")
        return collect(out)

    def _finish(self, finals: pl.LazyFrame, carry: tuple[str, ...] = ()) -> pl.LazyFrame:
        internal = finals.select(*self.schema, *carry).cast(self.schema)
        return finish(self.node, internal, carry)

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> State:
        frames: dict[str, pl.DataFrame] = {}
        for name, store in (("partials", self.partials),
                            *((f"distinct{i}", d) for i, d in enumerate(self.distinct))):
            cold, hot = store.parts()
            if cold is not None:
                frames[f"{name}.cold"] = cold
            if hot is not None:
                frames[f"{name}.hot"] = hot
        return State(frames=frames)

    def restore(self, state: State) -> None:
        self.partials.restore_parts(state.frame("partials.cold"), state.frame("partials.hot"))
        for i, store in enumerate(self.distinct):
            store.restore_parts(state.frame(f"distinct{i}.cold"), state.frame(f"distinct{i}.hot"))

    def contents(self, state: State) -> pl.DataFrame | None:
        rows = self.partials.merge_parts(state.frame("partials.cold"),
                                         state.frame("partials.hot"))
        if rows is None:
            return None
        return collect(self._finish(self.calc.finalize(rows.lazy(), self.group, None)))
