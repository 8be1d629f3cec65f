"""Batches are admitted all or nothing, and judged late when they are admitted.

``push_batch`` and ``push_arrow`` either accept every row (late ones counted,
the rest enqueued) or raise and enqueue none, whatever the reason; rows are
late or not against the watermark as it stands when they become visible to
the engine, never as it stood before a wait for room.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
import time

import polars as pl
import pyarrow as pa
import pytest
from conftest import read_all

import laminar_polars as lp

DEADLINE = 30.0
SECOND = 1_000_000


def _window_source(db: lp.LaminarDB, size: int = 4) -> lp.Source:
    db.execute(
        f"CREATE SOURCE s (k VARCHAR NOT NULL, v BIGINT, ts TIMESTAMP NOT NULL, "
        f"WATERMARK FOR ts AS ts - INTERVAL '5' SECOND) WITH (buffer_size = {size});"
        "CREATE MATERIALIZED VIEW w AS SELECT k, tumble(ts, INTERVAL '10' SECOND) AS ws, "
        "count(*) AS n, sum(v) AS total FROM s GROUP BY k, tumble(ts, INTERVAL '10' SECOND) "
        "EMIT ON WINDOW CLOSE"
    )
    return db.source("s")


class Call(threading.Thread):
    """Runs ``fn`` on its own thread; `error` holds what it raised."""

    def __init__(self, fn) -> None:
        super().__init__(daemon=True)
        self.fn, self.error, self.returned = fn, None, threading.Event()

    def run(self) -> None:
        try:
            self.fn()
        except BaseException as exc:  # checked by the test
            self.error = exc
        self.returned.set()


def _blocked_in_enqueue(call: Call) -> None:
    """Wait until ``call`` sits in the ring's wait for room (its innermost
    Python frame is the Source method that calls into the ring), then a bit."""
    deadline = time.monotonic() + DEADLINE
    while True:
        frame = sys._current_frames().get(call.ident)
        if frame is not None and frame.f_code.co_name in ("_enqueue", "push_arrow", "push_batch"):
            break
        assert time.monotonic() < deadline and call.is_alive(), "the call never blocked"
        time.sleep(0.005)
    call.join(0.2)
    assert call.is_alive(), "the call did not wait for room"


@pytest.mark.parametrize("method", ["push_arrow", "push_batch"])
def test_rows_are_judged_late_when_admitted_not_before_waiting(db, method):
    """A batch judged on time, then blocked on a full ring while the watermark
    passes its window, used to be admitted anyway: the closed window was
    emitted a second time. Judged at admission, its row is late instead."""
    src = _window_source(db)
    sub = db.sink("w").subscribe()
    src.push_batch([("a", 1, i * SECOND) for i in range(1, 5)])  # fills the ring
    row = ("a", 100, 2 * SECOND)  # on time now (watermark -1 s), in window [0, 10 s)
    if method == "push_arrow":
        table = pa.table({"k": [row[0]], "v": [row[1]],
                          "ts": pa.array([row[2]], pa.timestamp("us"))})
        call = Call(lambda: src.clone().push_arrow(table))
    else:
        call = Call(lambda: src.clone().push_batch([row]))
    call.start()
    _blocked_in_enqueue(call)
    src.watermark(20 * SECOND)  # passes the window's end while the call waits
    db.start()
    assert call.returned.wait(DEADLINE) and call.error is None
    db.stop()
    got = read_all(sub)
    assert got.select("k", "n", "total").rows() == [("a", 4, 4)]  # once, without the late row
    assert db.metrics()["sources"]["s"]["late"] == 1


def test_push_batch_reject_checks_string_room_for_every_row(db):
    """Five rows of 20 KB strings into a 64-row ring (a 64 KiB string arena)
    under 'reject' used to return normally with three rows enqueued."""
    db.execute("CREATE SOURCE q (i BIGINT, s VARCHAR) WITH (buffer_size = 64, "
               "backpressure = 'reject')")
    sub = db.sink("q").subscribe()
    src = db.source("q")
    rows = [(i, str(i) * 20_000) for i in range(5)]
    src.push_batch(rows)  # a batch keeps its strings in its own buffer: all five fit
    assert src.pending == 5
    db.stop()
    assert read_all(sub).rows() == rows


def test_push_batch_waiting_for_room_when_the_source_closes_enqueues_none(db):
    """Six rows waiting for room in a ring holding four used to raise Closed
    after four of them went in (and were delivered)."""
    db.execute("CREATE SOURCE q (i BIGINT) WITH (buffer_size = 8)")
    sub = db.sink("q").subscribe()
    src = db.source("q")
    src.push_batch([(i,) for i in range(4)])
    call = Call(lambda: src.clone().push_batch([(100 + i,) for i in range(6)]))
    call.start()
    _blocked_in_enqueue(call)
    assert src.pending == 4
    src.close()
    assert call.returned.wait(DEADLINE)
    assert isinstance(call.error, lp.Closed)
    db.stop()
    assert read_all(sub)["i"].to_list() == [0, 1, 2, 3]


def test_push_batch_with_an_oversize_string_is_all_or_nothing(db):
    """A row whose strings need more than half the string arena used to raise
    after the rows before it were enqueued. Such a row is stored with its own
    buffer now, in a batch or alone, in order with the rest."""
    db.execute("CREATE SOURCE q (i BIGINT, s VARCHAR) WITH (buffer_size = 64)")
    sub = db.sink("q").subscribe()
    src = db.source("q")
    huge = "h" * 40_000  # the arena is 64 KiB: more than half of it
    src.push((0, "a"))
    src.push_batch([(1, "b"), (2, huge), (3, "c")])
    src.push((4, huge))  # one row alone too
    src.push((5, "d"))
    db.stop()
    assert read_all(sub).rows() == [(0, "a"), (1, "b"), (2, huge), (3, "c"), (4, huge), (5, "d")]


@pytest.mark.parametrize("kind", ["polars", "pyarrow", "pyarrow_large", "pandas"])
def test_push_arrow_with_strings_and_late_rows_keeps_the_on_time_rows(db, kind):
    """A Polars frame (its strings exported as string_view) with one late row
    used to fail inside pyarrow's filter, lose its on-time rows, and still
    count the late row."""
    db.execute("CREATE SOURCE t (s VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, "
               "WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)")
    sub = db.sink("t").subscribe()
    src = db.source("t")
    src.push(("first", dt.datetime(2024, 1, 1, 0, 0, 10)))
    frame = pl.DataFrame({
        "s": ["on time", "late", "also on time"],
        "ts": [dt.datetime(2024, 1, 1, 0, 0, 11), dt.datetime(2024, 1, 1, 0, 0, 1),
               dt.datetime(2024, 1, 1, 0, 0, 10, 500_000)],
    })
    data = {"polars": frame, "pyarrow": frame.to_arrow(),
            "pyarrow_large": frame.to_arrow().cast(pa.schema([("s", pa.large_string()),
                                                              ("ts", pa.timestamp("us"))])),
            "pandas": frame.to_pandas()}[kind]
    src.push_arrow(data)
    db.stop()
    assert read_all(sub)["s"].to_list() == ["first", "on time", "also on time"]
    assert db.metrics()["sources"]["t"]["late"] == 1


@pytest.mark.parametrize("method", ["push_arrow", "push_batch"])
def test_a_refused_batch_counts_no_late_rows(db, method):
    """All or nothing: a batch refused for room counts its rows as rejected,
    none as late."""
    db.execute("CREATE SOURCE t (i BIGINT, ts TIMESTAMP NOT NULL, "
               "WATERMARK FOR ts AS ts) WITH (buffer_size = 4, backpressure = 'reject')")
    src = db.source("t")
    src.push_batch([(i, 10 * SECOND) for i in range(4)])
    rows = [(9, 1 * SECOND)] + [(i, 20 * SECOND) for i in range(3)]
    with pytest.raises(lp.Full):
        if method == "push_batch":
            src.push_batch(rows)
        else:
            src.push_arrow(pa.table({"i": [r[0] for r in rows],
                                     "ts": pa.array([r[1] for r in rows], pa.timestamp("us"))}))
    stats = db.metrics()["sources"]["t"]
    assert (stats["late"], stats["rejected"], stats["pending"]) == (0, 4, 4)


def test_take_cut_short_hands_out_the_previous_watermark(monkeypatch):
    """When a micro-batch is capped, the rows left behind made the watermark
    read before it: it must not reach the views before they do."""
    from laminar_polars.engine import scheduler
    monkeypatch.setattr(scheduler, "MAX_BATCH_ROWS", 3)
    db = lp.open()
    src = _window_source(db, size=16)
    sub = db.sink("w").subscribe()
    # Seven rows in one window, then one that closes it: with three rows per
    # micro-batch, the closing row's watermark is read while four rows wait.
    src.push_batch([("a", 1, 5 * SECOND)] * 7 + [("a", 1, 30 * SECOND)])
    db.start()
    db.stop()
    got = read_all(sub).sort("ws")
    assert got.select("n", "total").rows() == [(7, 7), (1, 1)]
    assert db.metrics()["sources"]["s"]["late"] == 0
