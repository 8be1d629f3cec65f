"""Every join view's state survives a snapshot written to Parquet and read back,
restored into a database with the same or another number of workers: what the
views emitted across the cut, and db.query then, equal the batch oracle.
Hypothesis picks where the cut falls."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
import test_oracle_joins as joins
import test_snapshot_roundtrip as roundtrip
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from join_oracle import feed_runs, make_streams
from oracle import assert_same, read_all

import laminar_polars as lp
from laminar_polars.engine.sentinels import NO_WATERMARK

NAMES = [*joins.SQL_NAMES, *joins.LAZY_VIEWS]
APPENDING = NAMES  # every join view appends; its history holds what it emitted


def _drained(db: lp.LaminarDB) -> None:
    deadline = time.monotonic() + 30
    while any(s["pending"] for s in db.metrics()["sources"].values()):
        assert time.monotonic() < deadline, "the engine never took the rows"
        time.sleep(0.001)


def _cut_run(streams, seed: int, cut: int, before: int, after: int
             ) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame]]:
    runs = streams.runs()
    db = joins._open(before)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    db.start()
    feed_runs(db, runs[:cut], "mixed", seed)
    _drained(db)
    views = db.runtime.views
    states = db.runtime.scheduler.at_barrier(
        lambda: {name: view.snapshot() for name, view in views.items()})
    marks = {name: db.source(name).ring.watermark for name in ("trades", "quotes")}
    first = {name: roundtrip._poll_all(subs[name]) for name in NAMES}
    db.stop()  # what it emits from here on is not read: the new database goes on
    with tempfile.TemporaryDirectory() as directory:
        states = roundtrip._through_parquet(states, Path(directory))
    db = joins._open(after)
    for name, view in db.runtime.views.items():
        view.restore(states[name])
    for name, mark in marks.items():
        if mark != NO_WATERMARK:
            db.source(name).watermark(mark)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    db.start()
    feed_runs(db, runs[cut:], "mixed", seed + cut)
    db.stop()
    rows = {}
    for name in NAMES:
        parts = [f for f in (*first[name], read_all(subs[name])) if f.width]
        rows[name] = pl.concat(parts) if parts else pl.DataFrame(schema=db.sink(name).schema)
    return rows, {name: db.query(f"SELECT * FROM {name}") for name in APPENDING}


def _check(seed: int, where: float, before: int, after: int, coarse: int | None) -> None:
    streams = make_streams(120, seed, "late", trades_delay_us=joins.TRADES_DELAY,
                           quotes_delay_us=joins.QUOTES_DELAY, coarse_us=coarse)
    cut = int(len(streams.runs()) * where)
    rows, contents = _cut_run(streams, seed, cut, before, after)
    joins.check(streams, rows)
    for name in APPENDING:  # an appending view's history holds what it emitted
        assert_same(contents[name], rows[name])


@pytest.mark.parametrize(("before", "after"), [(1, 1), (2, 1), (1, 2)])
def test_join_views_round_trip_through_parquet(before, after):
    _check(31, 0.5, before, after, 10_000)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), where=st.floats(0.0, 1.0),
       workers=st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       coarse=st.sampled_from([None, 10_000]))
def test_wherever_the_cut_falls(seed, where, workers, coarse):
    _check(seed, where, *workers, coarse)
