"""Lifecycle: an engine failure loses no accepted row, a database nobody
references stops its thread, a fork() after start() fails clearly in the child.

Waits here are only deadlines that fail a hung test, never speed measurements.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import os
import threading
import time
import warnings
import weakref

import polars as pl
import pyarrow as pa
import pytest

import laminar_polars as lp

DEADLINE = 30.0
T0 = dt.datetime(2024, 1, 1)
BAD_ROW = 300  # its `s` cannot be cast to INT: the failing view fails on it
ROWS = 1000

SOURCE = """CREATE SOURCE q (seq BIGINT NOT NULL, s VARCHAR, ts TIMESTAMP NOT NULL,
                             WATERMARK FOR ts AS ts - INTERVAL '10' MILLISECOND)
            WITH (buffer_size = {size}, backpressure = 'block')"""
BAD_VIEW = """CREATE MATERIALIZED VIEW bad AS
              SELECT CAST(s AS INT) AS x, count(*) AS n FROM {input} GROUP BY CAST(s AS INT)"""
HEALTHY_VIEW = """CREATE MATERIALIZED VIEW per_second AS
                  SELECT tumble(ts, INTERVAL '1' SECOND) AS w, count(*) AS n, sum(seq) AS total
                  FROM {input} GROUP BY tumble(ts, INTERVAL '1' SECOND)"""


def _row(i: int) -> tuple[int, str, dt.datetime]:
    s = "not a number" if i == BAD_ROW else str(i % 7)
    return (i, s, T0 + dt.timedelta(milliseconds=10 * i))


def _pipeline(db: lp.LaminarDB, *, size: int, stacked: bool, bad_first: bool) -> dict:
    """The source, a failing view and a healthy window view, each read by a sink.

    ``stacked``: both views (and the raw sink) read a row-wise view ``clean`` of
    the source, so the failure happens one view down. ``bad_first``: the
    failing view is its input's first reader (it sees each batch first).
    """
    db.execute(SOURCE.format(size=size))
    input = "q"
    if stacked:
        db.execute("CREATE MATERIALIZED VIEW clean AS SELECT seq, s, ts FROM q WHERE seq >= 0")
        input = "clean"
    views = [BAD_VIEW, HEALTHY_VIEW] if bad_first else [HEALTHY_VIEW, BAD_VIEW]
    db.execute(views[0].format(input=input))
    raw = db.sink(input).subscribe()  # a sink reading the failing view's input directly
    db.execute(views[1].format(input=input))
    return {
        "raw": raw,
        "healthy": db.sink("per_second").subscribe(),
        "bad": db.sink("bad").subscribe(),
        "iterated": db.sink(input).subscribe(),
        "async": db.sink("per_second").subscribe(),
        "arrow": db.sink(input).subscribe(),
    }


def _push_until_closed(src: lp.Source) -> tuple[list[int], lp.Closed | None]:
    """Push rows 0..ROWS-1, one by one and in batches of 10 by turns, until a
    push raises Closed; returns the rows whose push returned, and that error."""
    accepted: list[int] = []
    i = 0
    while i < ROWS:
        try:
            if (i // 10) % 2:
                src.push_batch([_row(j) for j in range(i, i + 10)])
                accepted.extend(range(i, i + 10))
                i += 10
            else:
                src.push(_row(i))
                accepted.append(i)
                i += 1
        except lp.Closed as closed:
            return accepted, closed
    return accepted, None


def _read_until_engine_error(sub: lp.Subscription) -> tuple[pl.DataFrame | None, lp.EngineError]:
    """Every frame the subscription delivers, then the EngineError that ends it."""
    frames = []
    while True:
        try:
            frames.append(sub.recv(timeout=DEADLINE))
        except lp.EngineError as error:
            return (pl.concat(frames) if frames else None), error


def _per_second(seqs: list[int]) -> list[tuple]:
    """What Polars computes in batch for the healthy view on rows ``seqs``."""
    rows = pl.DataFrame([_row(i) for i in seqs], schema=["seq", "s", "ts"], orient="row")
    expected = (rows.group_by(pl.col("ts").dt.truncate("1s").alias("w"))
                .agg(pl.len().alias("n"), pl.col("seq").sum().alias("total")).sort("w"))
    return expected.rows()


def _check_stop_raises(db: lp.LaminarDB) -> BaseException:
    with pytest.raises(lp.EngineError, match="the engine failed") as info:
        db.stop()
    cause = info.value.__cause__
    assert isinstance(cause, pl.exceptions.InvalidOperationError), repr(cause)
    assert db.metrics()["engine"]["state"] == "failed"
    assert "failed" in repr(db)
    db.stop()  # reported once; stopping again is a no-op
    return cause


def _check_failed(db: lp.LaminarDB, subs: dict, accepted: list[int]) -> BaseException:
    """Healthy readers got every accepted row, every subscription ends with
    EngineError caused by the Polars error, the database says failed."""
    raw, error = _read_until_engine_error(subs["raw"])
    assert raw is not None and raw["seq"].to_list() == accepted
    cause = error.__cause__
    assert isinstance(cause, pl.exceptions.InvalidOperationError), repr(cause)

    healthy, error = _read_until_engine_error(subs["healthy"])
    assert healthy is not None
    assert healthy.sort("w").rows() == _per_second(accepted)
    assert error.__cause__ is cause

    _, error = _read_until_engine_error(subs["bad"])  # cut off at the failure
    assert error.__cause__ is cause
    with pytest.raises(lp.EngineError):  # and so on, every read
        subs["bad"].poll()

    seen = []
    with pytest.raises(lp.EngineError) as info:
        for frame in subs["iterated"]:
            seen.extend(frame["seq"].to_list())
    assert seen == accepted and info.value.__cause__ is cause

    async def read_async() -> int:
        windows = 0
        with pytest.raises(lp.EngineError):
            async for frame in subs["async"]:
                windows += frame.height
        return windows

    assert asyncio.run(asyncio.wait_for(read_async(), DEADLINE)) == len(healthy)

    with pytest.raises(pa.ArrowException, match="the engine failed"):
        pa.RecordBatchReader.from_stream(subs["arrow"]).read_all()

    assert db.metrics()["engine"]["state"] == "failed"
    assert "failed" in repr(db)
    return cause


@pytest.mark.parametrize("bad_first", [True, False])
@pytest.mark.parametrize("stacked", [False, True])
def test_engine_failure_delivers_every_accepted_row_to_healthy_readers(db, stacked, bad_first):
    subs = _pipeline(db, size=64, stacked=stacked, bad_first=bad_first)
    db.start()
    accepted, closed = _push_until_closed(db.source("q"))
    # The ring holds 64 rows, so the producer cannot get far past the bad row
    # before the engine fails and closes the source.
    assert closed is not None, "no push raised Closed after the engine failed"
    assert "the engine failed" in str(closed)
    assert isinstance(closed.__cause__, pl.exceptions.InvalidOperationError)
    assert BAD_ROW in accepted
    cause = _check_failed(db, subs, accepted)
    assert _check_stop_raises(db) is cause


@pytest.mark.parametrize("stacked", [False, True])
def test_engine_failure_in_stops_final_drain(db, stacked):
    """Never started: the failure happens in stop()'s own drain."""
    subs = _pipeline(db, size=4096, stacked=stacked, bad_first=True)
    accepted, closed = _push_until_closed(db.source("q"))
    assert closed is None and accepted == list(range(ROWS))
    assert db.metrics()["engine"]["state"] == "created"
    cause = _check_stop_raises(db)  # and does not hang
    assert _check_failed(db, subs, accepted) is cause


def test_failed_database_refuses_new_work(db):
    subs = _pipeline(db, size=4096, stacked=False, bad_first=True)
    src = db.source("q")
    src.push(_row(BAD_ROW))
    db.start()
    _read_until_engine_error(subs["bad"])
    with pytest.raises(lp.Closed, match="the engine failed"):
        src.push(_row(BAD_ROW + 1))
    with pytest.raises(lp.EngineError):
        db.execute("CREATE SINK late FROM q")
    try:  # the sink exists: it has ended with the failure, or is about to
        late = db.sink("q").subscribe()
    except lp.EngineError:
        pass
    else:
        _read_until_engine_error(late)
    with pytest.raises(lp.EngineError):
        db.sink("q").subscribe()
    with pytest.raises(lp.EngineError):
        db.stop()


@pytest.mark.parametrize("started", [True, False])
def test_failure_outside_any_view_still_ends_every_subscription(db, monkeypatch, started):
    """A failure the engine cannot charge to one reader (here: turning a ring's
    rows into a frame) stops the whole engine, and still ends every
    subscription with EngineError, never hangs."""
    from laminar_polars.engine import scheduler

    def broken(segments, schema):
        raise RuntimeError("cannot build a frame")

    monkeypatch.setattr(scheduler, "frame_of", broken)
    db.execute(SOURCE.format(size=64))
    db.execute(HEALTHY_VIEW.format(input="q"))
    subs = [db.sink("q").subscribe(), db.sink("per_second").subscribe()]
    src = db.source("q")
    src.push(_row(0))
    if started:
        db.start()
        for sub in subs:
            _, error = _read_until_engine_error(sub)
            assert isinstance(error.__cause__, RuntimeError)
        with pytest.raises(lp.Closed, match="cannot build a frame"):
            src.push(_row(1))
    with pytest.raises(lp.EngineError, match="cannot build a frame"):
        db.stop()
    for sub in subs:
        _, error = _read_until_engine_error(sub)
        assert isinstance(error.__cause__, RuntimeError)
    assert db.metrics()["engine"]["state"] == "failed"


# -- a database nobody references ---------------------------------------------------------------


def _scheduler_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "laminar-scheduler"}


def _started_and_dropped() -> tuple[weakref.ref, threading.Thread, lp.Subscription]:
    before = _scheduler_threads()
    db = lp.open()
    db.execute("CREATE SOURCE q (i BIGINT) WITH (wait_strategy = 'spin')")  # burns a core
    sub = db.sink("q").subscribe()
    db.start()
    db.source("q").push((1,))
    (thread,) = _scheduler_threads() - before
    return weakref.ref(db), thread, sub


def test_unreferenced_database_stops_its_thread():
    db_ref, thread, sub = _started_and_dropped()
    gc.collect()
    assert db_ref() is None, "the engine thread keeps the database alive"
    thread.join(DEADLINE)
    assert not thread.is_alive(), "the engine thread outlived its database"
    # What was pushed was still delivered, then the stream ended.
    assert sub.recv(timeout=DEADLINE)["i"].to_list() == [1]
    with pytest.raises(lp.Closed):
        sub.recv(timeout=DEADLINE)


def test_unreferenced_database_never_started_closes_its_sinks():
    db = lp.open()
    db.execute("CREATE SOURCE q (i BIGINT)")
    sub = db.sink("q").subscribe()
    src = db.source("q")
    db_ref = weakref.ref(db)
    del db
    gc.collect()
    assert db_ref() is None
    with pytest.raises(lp.Closed):
        sub.recv(timeout=DEADLINE)
    with pytest.raises(lp.Closed, match="no longer referenced"):
        src.push((1,))


# -- fork() after start() -------------------------------------------------------------------


def _fork() -> int:
    with warnings.catch_warnings():
        # Python 3.12+ warns that forking a process with threads may deadlock
        # the child: what this test is about.
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


def _in_child(checks) -> None:
    """Run ``checks`` in the forked child; its exit code and message go to the parent."""
    read_end, write_end = os.pipe()
    pid = _fork()
    if pid == 0:  # the child: never return into pytest
        code, message = 1, "?"
        try:
            os.close(read_end)
            checks()
            code, message = 0, "ok"
        except BaseException as exc:
            message = f"{type(exc).__name__}: {exc}"
        finally:
            os.write(write_end, message.encode()[:60_000])
            os._exit(code)
    os.close(write_end)
    deadline = time.monotonic() + DEADLINE
    status = None
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.01)
    else:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        os.close(read_end)
        pytest.fail("the forked child hung")
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0, message


def test_fork_after_start_fails_clearly_in_the_child(db):
    db.execute("CREATE SOURCE q (i BIGINT NOT NULL) WITH (buffer_size = 64)")
    sub = db.sink("q").subscribe()
    src = db.source("q")
    db.start()
    src.push_batch([(i,) for i in range(10)])
    got: list[int] = []
    while len(got) < 10:
        got.extend(sub.recv(timeout=DEADLINE)["i"].to_list())
    parent = os.getpid()

    def checks() -> None:
        why = f"started in process {parent} before fork"
        pushed = 0
        try:
            for i in range(100):  # more than the ring holds: never blocks
                src.push((i,))
                pushed += 1
        except lp.Closed as closed:
            assert why in str(closed), str(closed)
        assert pushed == 0, f"{pushed} rows were pushed into the parent's engine's ring"
        assert db.metrics()["engine"]["state"] == "forked"
        assert "forked" in repr(db)
        try:
            sub.recv(timeout=DEADLINE)
            raise AssertionError("a subscription in the child received rows")
        except lp.Closed as closed:
            assert why in str(closed), str(closed)
        try:
            db.execute("CREATE SOURCE other (i BIGINT)")
            raise AssertionError("DDL was accepted in the child")
        except lp.Closed as closed:
            assert why in str(closed), str(closed)
        db.stop()  # does nothing here: the rows are the parent's to process
        assert db.metrics()["sources"]["q"]["pushed"] == 10

    _in_child(checks)
    # The parent's database is untouched.
    assert db.metrics()["engine"]["state"] == "running"
    src.push_batch([(i,) for i in range(10, 20)])
    db.stop()
    while True:
        try:
            got.extend(sub.recv(timeout=DEADLINE)["i"].to_list())
        except lp.Closed:
            break
    assert got == list(range(20))

