"""One row per key, found and replaced in time that grows with the batch, not the state.

A continuous aggregate holds a row per key (a million keys is ordinary) and
every micro-batch touches a few of them. Re-grouping the whole state per batch
costs O(state); this store costs O(batch) per batch, amortized, the way a
log-structured merge tree does, in two Polars frames:

- ``cold``: most rows, sorted by a 64-bit hash of the key. A batch's keys are
  found by binary search on that hash column (``search_sorted``: O(batch x
  log state)) and a gather, then checked on the key columns themselves (two
  keys may share a hash).
- ``hot``: the rows written since the last compaction, at most ``hot_limit``;
  searched with a join (O(hot), bounded), and taking precedence over ``cold``.

When ``hot`` outgrows its limit it is merged into ``cold`` (O(state), once per
``hot_limit / batch`` batches). The hash column is a cache: `rows` and
`restore` deal in the rows alone, and it is rebuilt.

Examples
--------
>>> import polars as pl
>>> store = KeyedState(["k"])
>>> store.upsert(pl.DataFrame({"k": ["a", "b"], "n": [1, 2]}))
>>> store.find(pl.DataFrame({"k": ["b", "z"]})).drop(HASH)
shape: (1, 2)
┌─────┬─────┐
│ k   ┆ n   │
│ --- ┆ --- │
│ str ┆ i64 │
╞═════╪═════╡
│ b   ┆ 2   │
└─────┴─────┘
>>> store.upsert(pl.DataFrame({"k": ["b"], "n": [5]}))
>>> store.rows().sort("k")["n"].to_list(), len(store)
([1, 5], 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

__all__ = ["HASH", "KeyedState", "key_hash"]

HASH = "__key_hash"

# Rows written since the last compaction kept apart (searched with a join, so
# this bounds the per-batch cost of finding a batch's keys among them).
HOT_LIMIT = 1 << 15


def key_hash(keys: Sequence[str]) -> pl.Expr:
    """The 64-bit hash of a row's key columns (nulls hash as a value)."""
    return pl.struct([pl.col(k) for k in keys]).hash().alias(HASH)


class KeyedState:
    """Rows with unique ``keys``, updated by `upsert`, found by `find`.

    The caller keeps the rows' meaning (partial aggregates, distinct pairs...);
    this class only stores them by key. Rows given to `upsert` and probes given
    to `find` carry the key columns; the hash column is added when missing.
    """

    def __init__(self, keys: Sequence[str], hot_limit: int = HOT_LIMIT) -> None:
        if not keys:
            raise ValueError("a keyed state needs at least one key column")
        self.keys = list(keys)
        self.hot_limit = hot_limit
        self.cold: pl.DataFrame | None = None  # sorted by HASH, keys unique
        self.hot: pl.DataFrame | None = None  # keys unique, newer than cold's
        self.hash = key_hash(self.keys)  # the expression adding the hash column

    def __len__(self) -> int:
        """Number of keys held (O(hot) to count the keys held in both parts)."""
        if self.cold is None or self.hot is None:
            return (self.cold.height if self.cold is not None else 0) + (
                self.hot.height if self.hot is not None else 0)
        both = self.hot.join(self.cold.select(self.keys), on=self.keys, how="semi",
                             nulls_equal=True).height if self.hot.height else 0
        return self.cold.height + self.hot.height - both

    def hashed(self, frame: pl.DataFrame) -> pl.DataFrame:
        """``frame`` with the hash column (computed once; kept if present)."""
        return frame if HASH in frame.columns else frame.with_columns(self.hash)

    # -- per batch ---------------------------------------------------------------
    # The lazy forms let a caller fold finding and replacing a batch's keys into
    # its own Polars plan: each eager Polars call costs 50-150 us here, so a
    # batch that runs two plans instead of a dozen calls saves milliseconds.
    def find_lazy(self, probe: pl.DataFrame) -> pl.LazyFrame | None:
        """`find` as a plan over ``probe`` (with its hash column); only the
        binary search of the cold part runs now."""
        parts: list[pl.LazyFrame] = []
        hot = None
        columns: list[str] = []
        if self.hot is not None and self.hot.height:
            hot = self.hot.lazy().join(probe.lazy(), on=self.keys, how="semi",
                                       nulls_equal=True)
            parts.append(hot)
            columns = self.hot.columns
        if self.cold is not None and self.cold.height:
            cold = self._search_cold(probe)
            if hot is not None:  # hot rows supersede cold ones
                cold = cold.join(hot, on=self.keys, how="anti", nulls_equal=True)
            parts.append(cold.select(columns or self.cold.columns))
        if not parts:
            return None
        return pl.concat(parts, how="vertical") if len(parts) > 1 else parts[0]

    def find(self, probe: pl.DataFrame) -> pl.DataFrame | None:
        """The stored rows of the keys in ``probe`` (unique keys), with the hash
        column; keys not stored are absent. None if nothing was ever stored."""
        found = self.find_lazy(self.hashed(probe))
        return None if found is None else found.collect(engine="in-memory")

    def _search_cold(self, probe: pl.DataFrame) -> pl.LazyFrame:
        """The cold rows of ``probe``'s keys: a binary search for their hashes
        now (two keys may share a hash), the check of the keys in the plan."""
        assert self.cold is not None
        hashes = self.cold.get_column(HASH)
        wanted = probe.get_column(HASH)
        left = hashes.search_sorted(wanted, side="left").to_numpy()
        right = hashes.search_sorted(wanted, side="right").to_numpy()
        counts = right - left
        if counts.size and counts.max() > 1:  # shared hashes: every row of each run
            starts = np.repeat(left, counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            rows = starts + offsets
        else:
            rows = left[counts == 1]
        rows = _sorted_unique(rows)  # two probed keys may share a hash: each row once
        candidates = self.cold[pl.Series(rows, dtype=pl.Int64)]
        return candidates.lazy().join(probe.lazy(), on=self.keys, how="semi",
                                      nulls_equal=True)

    def upsert_lazy(self, rows: pl.LazyFrame) -> pl.LazyFrame:
        """The hot part with ``rows`` (unique keys, with the hash column)
        replacing those keys' rows, as a plan; give its result to `set_hot`."""
        if self.hot is None or not self.hot.height:
            return rows
        kept = self.hot.lazy().join(rows, on=self.keys, how="anti", nulls_equal=True,
                                    maintain_order="left")
        return pl.concat([kept, rows.select(self.hot.columns)], how="vertical")

    def set_hot(self, hot: pl.DataFrame) -> None:
        """Take the hot part `upsert_lazy` made; compact once it is too big."""
        self.hot = hot
        if hot.height > self.hot_limit:
            self.compact()

    def upsert(self, rows: pl.DataFrame) -> None:
        """Store ``rows`` (unique keys), replacing the rows of those keys."""
        if rows.height:
            self.set_hot(self.upsert_lazy(self.hashed(rows).lazy()).collect(engine="in-memory"))

    def compact(self) -> None:
        """Merge ``hot`` into ``cold`` (O(state); amortized over many batches)."""
        if self.hot is None or not self.hot.height:
            return
        hot = self.hot.sort(HASH)
        if self.cold is None or not self.cold.height:
            self.cold = hot
        else:
            stale = _without(self.cold, hot, self.keys)  # still sorted
            self.cold = stale.merge_sorted(hot.select(stale.columns), key=HASH)
        self.hot = None

    def remove(self, keys: pl.DataFrame) -> None:
        """Forget the rows of ``keys`` (O(state): for occasional use)."""
        for part in ("cold", "hot"):
            frame = getattr(self, part)
            if frame is not None and frame.height:
                setattr(self, part, _without(frame, keys, self.keys))

    # -- whole state ---------------------------------------------------------------
    def rows(self) -> pl.DataFrame | None:
        """Every stored row, without the hash column; None if never written."""
        if self.cold is None and self.hot is None:
            return None
        parts = [p for p in (self.cold, self.hot) if p is not None]
        if len(parts) == 2 and parts[1].height:
            parts[0] = _without(parts[0], parts[1], self.keys)
        return pl.concat([p.select(parts[0].columns) for p in parts]).drop(HASH)

    def restore(self, rows: pl.DataFrame | None) -> None:
        """Replace everything with ``rows`` (unique keys), e.g. from a snapshot."""
        self.restore_parts(rows, None)

    def parts(self) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
        """The two parts without the hash column: a snapshot in O(1) (the frames
        are never changed in place). `merge_parts` makes the rows of them."""
        return (None if self.cold is None else self.cold.drop(HASH),
                None if self.hot is None else self.hot.drop(HASH))

    def restore_parts(self, cold: pl.DataFrame | None, hot: pl.DataFrame | None) -> None:
        """Take over the parts of `parts` (the hashes are recomputed)."""
        self.cold = None if cold is None else self.hashed(cold).sort(HASH)
        self.hot = None if hot is None else self.hashed(hot)

    def merge_parts(self, cold: pl.DataFrame | None,
                    hot: pl.DataFrame | None) -> pl.DataFrame | None:
        """The rows of two parts from `parts`: hot rows replace cold ones."""
        if cold is None or hot is None or not hot.height:
            return cold if hot is None else hot if cold is None else cold
        return pl.concat([_without(cold, hot, self.keys), hot.select(cold.columns)])


def _without(rows: pl.DataFrame, keys: pl.DataFrame, on: list[str]) -> pl.DataFrame:
    """``rows`` minus those whose key is in ``keys``, in their order."""
    return rows.join(keys.select(on), on=on, how="anti", nulls_equal=True,
                     maintain_order="left")


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique(values)`` by a sort and a comparison of neighbours: numpy
    2.4's own (hash-based) took 0.57 s for 630 k row numbers here, this 0.04 s."""
    ordered = np.sort(values)
    if ordered.size < 2:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
