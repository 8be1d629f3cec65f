"""kill -9 mid-stream, reopen, recover (docs/durability.md's guarantees).

A child process pushes numbered rows (push, push_batch, push_arrow; one or two
producer threads), printing each acknowledged position; the parent SIGKILLs it
once enough acknowledgements arrived (several checkpoints in, at 40 ms
intervals), reopens the data_dir, repeats the DDL, starts and stops, and
checks the rows each view holds:

- ``sync``: every acknowledged row exactly once; of the call in flight, all of
  its rows or none (a row-wise view lists them all);
- ``async``: no row twice, and per producer a prefix of what it pushed (a kill
  may lose the last flush interval's rows, never a row in the middle);
- checkpoints only: exactly the prefix the last checkpoint's
  ``checkpointed_rows`` names.

A continuous aggregate and a window view must equal the batch oracle over the
rows held. The seeds vary where the kill falls.
"""

from __future__ import annotations

import random

import polars as pl
import pytest
from helpers import oracle, recovered, run_child, same

ROWS = 4000


def _check_views(views: dict[str, pl.DataFrame]) -> pl.DataFrame:
    seen = views["seen"]
    assert seen.select("p", "seq").is_unique().all(), "a row is held twice"
    expected = oracle(seen)
    assert same(views["totals"], expected["totals"]), "the aggregate differs from the oracle"
    assert same(views["bars"], expected["bars"]), "the window view differs from the oracle"
    return seen


def _prefixes(seen: pl.DataFrame, producers: int) -> dict[int, int]:
    """Per producer, how many rows are held; asserting they are its first rows."""
    held = {}
    for p in range(producers):
        seqs = sorted(seen.filter(pl.col("p") == p)["seq"].to_list())
        assert seqs == list(range(len(seqs))), f"producer {p}: not a prefix of its rows"
        held[p] = len(seqs)
    return held


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method,producers", [("push", 1), ("push_batch", 1), ("push_arrow", 1),
                                              ("push", 2), ("push_batch", 2)])
def test_sync_keeps_every_acknowledged_row_exactly_once(tmp_path, method, producers, seed):
    kill_after = random.Random(seed).randrange(300, 900)
    acked = run_child(tmp_path, "sync", method, producers, ROWS, kill_after)
    db, views = recovered(tmp_path, "sync")
    held = _prefixes(_check_views(views), producers)
    for p in range(producers):
        assert held[p] >= acked[p], f"producer {p}: an acknowledged row was lost"
        in_flight = held[p] - acked[p]
        assert in_flight <= 13, f"producer {p}: more than the call in flight came back"
    assert db.metrics()["durability"]["replayed_rows"] > 0 or db.metrics()["durability"][
        "last_checkpoint"] is not None


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("method", ["push", "push_arrow"])
def test_async_loses_at_most_the_last_flush_never_duplicates(tmp_path, method, seed):
    kill_after = random.Random(seed).randrange(300, 900)
    run_child(tmp_path, "async", method, 2, ROWS, kill_after)
    _, views = recovered(tmp_path, "async")
    _prefixes(_check_views(views), 2)


@pytest.mark.parametrize("method", ["push", "push_batch"])
def test_async_clean_stop_loses_nothing(tmp_path, method):
    acked = run_child(tmp_path, "async", method, 2, 1500, None)
    _, views = recovered(tmp_path, "async")
    assert _prefixes(_check_views(views), 2) == acked == {0: 1500, 1: 1500}


@pytest.mark.parametrize("seed", range(3))
def test_checkpoints_only_hold_the_prefix_checkpointed_rows_names(tmp_path, seed):
    kill_after = random.Random(seed).randrange(300, 900)
    run_child(tmp_path, None, "push_batch", 1, ROWS, kill_after)
    db, views = recovered(tmp_path, None)
    checkpointed = db.metrics()["sources"]["events"]["checkpointed_rows"]
    held = _prefixes(_check_views(views), 1)
    assert held[0] == checkpointed
