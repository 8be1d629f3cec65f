"""The engine's operators, one per module, each an `engine.operator.Operator`.

What each keeps as durable state (its `snapshot`), and what is a cache
rebuilt on `restore`:

- `row_map.RowMapOperator`: stateless.
- `grid.GridWindows`: merged partials, pending rows, distinct pairs, Polars'
  first-row origins, the watermark and the latest event time; under EMIT ON
  UPDATE also the closed windows' rows. Caches: the ready rows and their
  bounds, the earliest window ends, the merge timing.
- `session.SessionWindows`: the projected rows of open sessions, the watermark.
- `keyed.KeyedAggregate`: the partial rows per key and the distinct pairs,
  each as a `KeyedState`'s cold and hot part. Cache: the key hashes.
- `history.History`: the rows kept within the retention. Cache: each kept
  frame's earliest event time.
- `sharded.Sharded`: each copy's state, prefixed ``shard<i>.``.
"""
