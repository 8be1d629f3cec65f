"""`KeyedAggregate`: a continuous aggregate, one row per key, updated in place.

Each batch is aggregated into one partial row per key it touches (O(batch));
those keys' stored partials are found in a `KeyedState` (O(batch), amortized)
and merged with the batch's; the merged rows replace them and, finalized, go
downstream as upserts, marked new where the key was not stored before. The
cost of a batch grows with the batch, not with the keys held.

A distinct count (``count(DISTINCT x)``) keeps its distinct ``(key, value)``
pairs in a `KeyedState` of their own; the batch's pairs not stored yet are
new, and each key's count of them is added to the count in its row.

Without keys (SQL without GROUP BY) the aggregate holds one row from the start,
as Polars computes it over no rows (``count(*)`` 0, ``sum`` NULL in SQL): its
`contents`, which ``db.query`` reads. Nothing is emitted for it (no input
changed it); the first batch's row goes downstream as the key's insert.

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
        """The batch's keys' new rows, as upserts (new where the key was not
        stored). A handful of Polars calls whatever the keys held: the batch's
        partials and distinct pairs in one, finding and replacing the touched
        keys (`KeyedState`), and the merge and the emitted rows in one."""
        frame = delta.rows
        if not frame.height:
            return None
        rows = frame.lazy() if self.keys else frame.lazy().with_columns(pl.lit(True).alias(ALL))
        packing = self.calc.packing(frame)
        projected = self.calc.project(rows, self.group, packing)
        plans = [self.calc.partials_lazy(projected, self.group, packing)
                 .with_columns(self.partials.hash)]
        plans += [pairs.with_columns(store.hash) for pairs, store in
                  zip(self.calc.distinct_rows_lazy(projected, self.group), self.distinct,
                      strict=True)]
        batch, *pairs = pl.collect_all(plans, engine="in-memory")  # one projection
        stored = self.partials.find_lazy(batch)
        fresh = [self._new_pairs(slot, found) for slot, found in enumerate(pairs)]
        merged = self._merged(stored, batch, fresh)
        finals = self.calc.finalize(merged, self.group, None, [NEW])
        # The emitted rows and every store's new hot part in one call: shared
        # subplans (the merge) run once.
        hot, out, *pair_hots = pl.collect_all(
            [self.partials.upsert_lazy(merged.drop(NEW)), self._finish(finals, (NEW,)),
             *(store.upsert_lazy(rows) for store, rows in zip(self.distinct, fresh, strict=True))],
            engine="in-memory")
        self.partials.set_hot(hot)
        for store, pair_hot in zip(self.distinct, pair_hots, strict=True):
            store.set_hot(pair_hot)
        return split_new(out)

    def _new_pairs(self, slot: int, pairs: pl.DataFrame) -> pl.LazyFrame:
        """A distinct count's ``(key, value)`` pairs of the batch not stored yet."""
        seen = self.distinct[slot].find_lazy(pairs)
        if seen is None:
            return pairs.lazy()
        return pairs.lazy().join(seen, on=[*self.group, VALUE], how="anti", nulls_equal=True)

    def _merged(self, stored: pl.LazyFrame | None, batch: pl.DataFrame,
                fresh: list[pl.LazyFrame]) -> pl.LazyFrame:
        """The touched keys' new partial rows (their stored partials merged with
        the batch's, distinct counts added up), marked NEW where not stored."""
        if stored is None:
            merged = batch.lazy().with_columns(pl.lit(True).alias(NEW))
        else:
            stacked = pl.concat([stored.select(batch.columns), batch.lazy()], how="vertical")
            known = stored.select(*self.group, pl.lit(False).alias(NEW))
            merged = (self.calc.merge_lazy(stacked, [*self.group, HASH])
                      .join(known, on=self.group, how="left", nulls_equal=True,
                            maintain_order="left")
                      .with_columns(pl.col(NEW).fill_null(True)))
        if not self.counts:
            return merged
        if stored is not None:
            merged = merged.join(stored.select(*self.group, *self.counts), on=self.group,
                                 how="left", nulls_equal=True, maintain_order="left")
        for slot, name in enumerate(self.counts):
            agg = self.node.aggs[self.calc.distinct[slot]]
            function = self.calc.functions[self.calc.distinct[slot]]
            added = fresh[slot].group_by(self.group).agg(
                function.count_distinct(agg, pl.col(VALUE)).alias(f"{name}+"))
            total = pl.col(f"{name}+").fill_null(0)
            if stored is not None:
                total = pl.col(name).fill_null(0) + total
            merged = (merged.join(added, on=self.group, how="left", nulls_equal=True,
                                  maintain_order="left")
                      .with_columns(total.cast(pl.UInt32).alias(name)).drop(f"{name}+"))
        return merged

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
        if rows is None and self.keys:
            return None
        partials = self._nothing() if rows is None else rows.lazy()
        return collect(self._finish(self.calc.finalize(partials, self.group, None)))

    def _nothing(self) -> pl.LazyFrame:
        """The one row of an aggregate without keys before any input, as partials
        (each distinct count held under its name, as `_merged` leaves it)."""
        projected = self.calc.project(pl.LazyFrame(schema=self.node.input.schema), [])
        counts = [pl.lit(None, pl.UInt32).alias(name) for name in self.counts]
        return self.calc.partial_of_nothing(projected).with_columns(
            pl.lit(True).alias(ALL), *counts)
