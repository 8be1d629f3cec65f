"""Partitioned workers: with ``Config(workers=n)`` keyed operators are split by
key hash across n threads, and every view's answer is the same as with one
worker (and the batch oracle's); a snapshot taken with one number of workers
restores into another (one repartition of the state frames)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import polars as pl
import pytest
import test_snapshot_roundtrip as roundtrip
from oracle import assert_same, feed, last_per_key, read_all

import laminar_polars as lp
from laminar_polars.engine.sentinels import NO_WATERMARK

EVENTS = roundtrip._events(21, 800)
NAMES = [*roundtrip.CLOSING, *roundtrip.UPSERTING]


def _open(workers: int) -> lp.LaminarDB:
    db = lp.open(lp.Config(workers=workers))
    db.execute(roundtrip.trades_ddl(delay_us=roundtrip.DELAY_US))
    db.execute(roundtrip.VIEWS_SQL)
    db.create_materialized_view("lazy_hop", roundtrip.lazy_hop(db.stream("trades")))
    return db


def _run(workers: int, start: bool) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    db = _open(workers)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    if start:
        db.start()
    feed(db.source("trades"), EVENTS, "mixed", 21)
    db.stop()
    rows = {name: read_all(subs[name]) for name in NAMES}
    return rows, {name: db.query(f"SELECT * FROM {name}") for name in NAMES}


@pytest.fixture(scope="module")
def one_worker() -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    return _run(1, start=False)


@pytest.mark.parametrize("workers", [2, 4])
def test_more_workers_emit_the_same_rows_in_the_same_order(one_worker, workers):
    """Drained at stop: one micro-batch, so the order is defined (closed
    windows oldest first, then by key) and must not depend on the workers."""
    rows, contents = _run(workers, start=False)
    base_rows, base_contents = one_worker
    for name in roundtrip.CLOSING:
        assert rows[name].equals(base_rows[name]), name
    for name, keys in roundtrip.UPSERTING.items():
        got = last_per_key(rows[name], keys) if keys else rows[name].tail(1)
        want = last_per_key(base_rows[name], keys) if keys else base_rows[name].tail(1)
        assert_same(got, want)
    for name in NAMES:
        assert_same(contents[name], base_contents[name])


@pytest.mark.parametrize("workers", [1, 2, 4])
def test_workers_match_the_oracle_while_running(workers):
    """The engine running during the pushes (many micro-batches)."""
    rows, contents = _run(workers, start=True)
    cut_rows = {name: rows[name] for name in NAMES}
    roundtrip._check_oracle(EVENTS, cut_rows, contents)


@pytest.mark.parametrize("before,after", [(2, 4), (4, 1), (1, 3)])
def test_a_snapshot_restores_into_another_number_of_workers(before, after):
    cut = len(EVENTS) // 2
    db = _open(before)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    db.start()
    feed(db.source("trades"), EVENTS[:cut], "mixed", 5)
    roundtrip._drained(db)
    views = db.runtime.views
    states = db.runtime.scheduler.at_barrier(
        lambda: {name: view.snapshot() for name, view in views.items()})
    watermark = db.source("trades").ring.watermark
    first = {name: roundtrip._poll_all(subs[name]) for name in NAMES}
    db.stop()
    with tempfile.TemporaryDirectory() as directory:
        states = roundtrip._through_parquet(states, Path(directory))
    db = _open(after)
    for name, view in db.runtime.views.items():
        view.restore(states[name])
    if watermark != NO_WATERMARK:
        db.source("trades").watermark(watermark)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    db.start()
    feed(db.source("trades"), EVENTS[cut:], "mixed", 6)
    db.stop()
    rows = {}
    for name in NAMES:
        parts = [f for f in (*first[name], read_all(subs[name])) if f.width]
        rows[name] = pl.concat(parts) if parts else pl.DataFrame(schema=db.sink(name).schema)
    contents = {name: db.query(f"SELECT * FROM {name}") for name in NAMES}
    roundtrip._check_oracle(EVENTS, rows, contents)
