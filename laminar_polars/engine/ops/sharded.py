"""`Sharded`: a keyed operator split by key hash across worker threads.

With ``Config.workers = n`` every operator that groups by keys (windows,
sessions, continuous aggregates) runs as ``n`` copies, each owning the keys
whose hash modulo ``n`` is its number. A batch is split by that hash and each
copy takes its part on a thread of the database's pool; Polars releases the
GIL inside its calls, so copies overlap while they compute. Watermarks go to
every copy. The copies' rows are put back in one order: closed windows oldest
first, then by key, as one operator emits them.

Results equal one operator's: a key's rows all reach the same copy, in the
same order. With one worker the copy is called directly, no thread involved.

A join splits each input by its own keys (``right_keys``: the right input's
``right_on`` beside the left's ``left_on``); equal keys hash alike whatever
their columns are called, so matching rows meet in one copy.

State is per copy, each frame named ``shard<i>.<name>``. Restoring into
another number of workers repartitions it: every frame holding the key columns
of its port (`Operator.frame_port`) is split by the same hash; any other (rows
kept only for ``db.query``) goes to the first copy.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor

import polars as pl

from laminar_polars.engine.operator import Delta, Operator, Scalar, State
from laminar_polars.engine.sentinels import NO_WATERMARK

__all__ = ["Sharded"]

SHARD = "__shard"


def _shard_of(keys: Sequence[str], shards: int) -> pl.Expr:
    # A struct's hash depends on its values, not its field names: a join's
    # left and right keys agree however their columns are named.
    return (pl.struct([pl.col(k) for k in keys]).hash() % shards).alias(SHARD)


class Sharded(Operator):
    """``workers`` copies of the operator ``make`` builds, split by ``keys``.

    ``order`` names the output columns to put the copies' rows back in order
    by (window, then keys), if the output has them. ``right_keys`` are port
    1's keys (a join's right input), if they differ from ``keys``.
    """

    def __init__(self, make: Callable[[], Operator], keys: Sequence[str], workers: int,
                 pool: Executor | None, order: Sequence[str] = (),
                 right_keys: Sequence[str] | None = None) -> None:
        if not keys:
            raise ValueError("only an operator grouping by keys can be split")
        if workers > 1 and pool is None:
            raise ValueError("more than one worker needs a thread pool")
        self.shards = [make() for _ in range(workers)]
        self.ports = self.shards[0].ports
        self.keys = list(keys)
        self.port_keys = [self.keys, *([list(right_keys or keys)] * (self.ports - 1))]
        if any(len(k) != len(self.keys) for k in self.port_keys):
            raise ValueError("every port needs as many keys as the first")
        self.pool = pool
        self.order = list(order)

    @property
    def state_rows(self) -> int:
        return sum(s.state_rows for s in self.shards)

    @property
    def pending_rows(self) -> int:
        return sum(s.pending_rows for s in self.shards)

    @property
    def retained_rows(self) -> int:
        return sum(s.retained_rows for s in self.shards)

    @property
    def counters(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for shard in self.shards:
            for name, value in shard.counters.items():
                totals[name] = totals.get(name, 0) + value
        return totals

    def frame_port(self, name: str) -> int:
        return self.shards[0].frame_port(name)

    def _each(self, call: Callable[[Operator], Delta | None]) -> list[Delta | None]:
        if len(self.shards) == 1 or self.pool is None:
            return [call(shard) for shard in self.shards]
        return list(self.pool.map(call, self.shards))

    def _split(self, rows: pl.DataFrame, keys: Sequence[str]) -> list[pl.DataFrame]:
        shards = len(self.shards)
        parts = rows.with_columns(_shard_of(keys, shards)).partition_by(
            SHARD, as_dict=True, include_key=False, maintain_order=True)
        empty = rows.clear()
        return [parts.get((i,), empty) for i in range(shards)]

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        if len(self.shards) == 1:
            return self.shards[0].on_batch(port, delta)
        parts = self._split(delta.rows, self.port_keys[port])
        # An upsert's mask would have to be split too; a keyed operator's input
        # only ever appends (validate() refuses aggregating updates).
        assert delta.new is None, "a keyed operator's input appends"
        by_shard = dict(zip(self.shards, parts, strict=True))
        return self._merge(self._each(
            lambda shard: shard.on_batch(port, Delta(by_shard[shard]))
            if by_shard[shard].height else None))

    def on_watermark(self, watermark: int) -> Delta | None:
        return self._merge(self._each(lambda shard: shard.on_watermark(watermark)))

    def on_port_watermark(self, port: int, watermark: int) -> Delta | None:
        return self._merge(self._each(lambda shard: shard.on_port_watermark(port, watermark)))

    def settle(self) -> None:
        self._each(lambda shard: shard.settle())

    def output_watermark(self, watermark: int) -> int:
        return self.shards[0].output_watermark(watermark)

    def _merge(self, outs: list[Delta | None]) -> Delta | None:
        found = [d for d in outs if d is not None and d.height]
        if not found:
            return None
        if len(found) == 1:
            return found[0]
        rows = pl.concat([d.rows for d in found], how="vertical")
        if found[0].new is not None:  # upserts: a key's row in any order
            return Delta(rows, pl.concat([d.new for d in found if d.new is not None]))
        if self.order:
            rows = rows.sort(self.order, maintain_order=True, nulls_last=False)
        return Delta(rows)

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> State:
        frames: dict[str, pl.DataFrame] = {}
        scalars: dict[str, Scalar] = {"shards": len(self.shards)}
        for i, shard in enumerate(self.shards):
            state = shard.snapshot()
            frames.update({f"shard{i}.{name}": f for name, f in state.frames.items()})
            scalars.update({f"shard{i}.{name}": v for name, v in state.scalars.items()})
        return State(frames, scalars)

    def restore(self, state: State) -> None:
        for shard, part in zip(self.shards, self._repartition(state), strict=True):
            shard.restore(part)

    def _repartition(self, state: State) -> list[State]:
        """``state`` as one State per copy of this operator; a snapshot taken
        with another number of workers (or unsharded, as one) is split again."""
        shards = len(self.shards)
        taken = int(state.scalar("shards", 1))
        per_shard = [_unprefixed(state, i) for i in range(taken)]
        if taken == shards:
            return per_shard
        names = {name for part in per_shard for name in part.frames}
        frames: list[dict[str, pl.DataFrame]] = [{} for _ in range(shards)]
        for name in names:
            whole = pl.concat([p.frames[name] for p in per_shard if name in p.frames],
                              how="vertical")
            keys = self.port_keys[self.frame_port(name)]
            if all(k in whole.columns for k in keys) and whole.height:
                for i, part in enumerate(self._split(whole, keys)):
                    if part.height:
                        frames[i][name] = part
            else:
                frames[0][name] = whole
        scalars = _merged_scalars(per_shard)
        return [State(f, scalars) for f in frames]

    def contents(self, state: State) -> pl.DataFrame | None:
        parts = [shard.contents(part) for shard, part in
                 zip(self.shards, self._repartition(state), strict=True)]
        found = [p for p in parts if p is not None]
        return pl.concat(found, how="vertical") if found else None


def _unprefixed(state: State, shard: int) -> State:
    """Copy ``shard``'s part of a sharded snapshot; an unsharded one is shard 0."""
    if state.scalar("shards") is None:
        return state
    prefix = f"shard{shard}."
    return State({k[len(prefix):]: v for k, v in state.frames.items() if k.startswith(prefix)},
                 {k[len(prefix):]: v for k, v in state.scalars.items() if k.startswith(prefix)})


def _merged_scalars(parts: list[State]) -> dict[str, Scalar]:
    """The copies see the same watermarks; other scalars (the latest event time
    seen) are the greatest of them."""
    merged: dict[str, Scalar] = {}
    for part in parts:
        for name, value in part.scalars.items():
            earlier = merged.get(name)
            if isinstance(value, int) and isinstance(earlier, int):
                merged[name] = max(earlier, value)
            elif earlier is None or earlier == NO_WATERMARK:
                merged[name] = value
    return merged
