"""Sink / Subscription: broadcast, blocking receive, end of stream, Arrow export.

Timeouts here are only deadlines that fail a hung test, never speed measurements.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import threading

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import laminar_polars as lp
from laminar_polars.errors import (
    Closed,
    ConfigError,
    EngineError,
    Lagged,
    LaminarError,
    Timeout,
)
from laminar_polars.io.sink import Sink, Subscription

DEADLINE = 30.0  # seconds; only reached if something hangs

SCHEMA = pl.Schema({"k": pl.String, "v": pl.Int64})


def frame(*values: int) -> pl.DataFrame:
    return pl.DataFrame({"k": [f"k{v}" for v in values], "v": list(values)}, schema=SCHEMA)


def drain(sub: Subscription) -> pl.DataFrame:
    """Every frame until the subscription ends."""
    frames = list(sub)
    return pl.concat(frames) if frames else pl.DataFrame(schema=SCHEMA)


def test_broadcast_every_subscription_gets_every_row() -> None:
    sink = Sink("out", SCHEMA)
    subs = [sink.subscribe() for _ in range(3)]
    sink.emit(frame(1, 2))
    sink.emit(frame(3))
    sink.close()
    for sub in subs:
        assert_frame_equal(drain(sub), frame(1, 2, 3))


def test_frames_are_shared_not_copied() -> None:
    sink = Sink("out", SCHEMA)
    a, b = sink.subscribe(), sink.subscribe()
    f = frame(1)
    sink.emit(f)
    assert a.poll() is f
    assert b.recv(timeout=DEADLINE) is f


def test_late_subscriber_sees_only_later_frames() -> None:
    sink = Sink("out", SCHEMA)
    early = sink.subscribe()
    sink.emit(frame(1))
    late = sink.subscribe()
    sink.emit(frame(2))
    sink.close()
    assert_frame_equal(drain(early), frame(1, 2))
    assert_frame_equal(drain(late), frame(2))


def test_slow_subscriber_does_not_affect_another() -> None:
    sink = Sink("out", SCHEMA)
    slow = sink.subscribe()  # never reads until the end
    fast = sink.subscribe()
    for i in range(1000):
        sink.emit(frame(i))
        assert_frame_equal(fast.recv(timeout=DEADLINE), frame(i))
    assert fast.poll() is None
    assert {m["id"]: m["lag_rows"] for m in sink.metrics()} == {1: 1000, 2: 0}
    sink.close()
    assert_frame_equal(slow.poll(), frame(*range(1000)))


def test_poll_concatenates_and_returns_none() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    assert sub.poll() is None
    sink.emit(frame(1))
    sink.emit(frame())  # empty frames are skipped
    sink.emit(frame(2, 3))
    assert sink.metrics()[0]["lag_batches"] == 2
    out = sub.poll()
    assert_frame_equal(out, frame(1, 2, 3))
    assert out.n_chunks() == 2  # concatenated without rechunking
    assert sub.poll() is None


def test_recv_blocks_until_another_thread_emits() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    got: list[pl.DataFrame] = []
    reader = threading.Thread(target=lambda: got.append(sub.recv(timeout=DEADLINE)))
    reader.start()
    sink.emit(frame(7))
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert_frame_equal(got[0], frame(7))


def test_recv_timeout() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    with pytest.raises(Timeout) as info:
        sub.recv(timeout=0.01)
    assert isinstance(info.value, TimeoutError) and isinstance(info.value, LaminarError)
    with pytest.raises(Timeout):
        sub.recv_timeout(0)
    sink.emit(frame(1))
    assert_frame_equal(sub.recv_timeout(DEADLINE), frame(1))


def test_close_drains_then_raises_closed() -> None:
    sink = Sink("out", SCHEMA)
    a, b = sink.subscribe(), sink.subscribe()
    sink.emit(frame(1))
    sink.close()
    sink.close()  # idempotent
    sink.emit(frame(2))  # after close: discarded
    assert_frame_equal(a.recv(timeout=DEADLINE), frame(1))
    with pytest.raises(Closed):
        a.recv(timeout=DEADLINE)
    assert a.closed
    assert_frame_equal(b.poll(), frame(1))
    with pytest.raises(Closed):
        b.poll()
    with pytest.raises(Closed):
        sink.subscribe()


def test_close_wakes_a_blocked_recv() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    errors: list[BaseException] = []

    def read() -> None:
        try:
            sub.recv()  # no timeout: only close() can end it
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    sink.close()
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert isinstance(errors[0], Closed)


def test_iteration_ends_on_close() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    seen: list[pl.DataFrame] = []
    reader = threading.Thread(target=lambda: seen.extend(sub))
    reader.start()
    for i in range(5):
        sink.emit(frame(i))
    sink.close()
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert_frame_equal(pl.concat(seen), frame(0, 1, 2, 3, 4))


def test_subscription_close() -> None:
    sink = Sink("out", SCHEMA)
    sub, other = sink.subscribe(), sink.subscribe()
    sink.emit(frame(1))
    sub.close()
    sub.close()  # idempotent
    assert sub.closed and not other.closed
    assert [m["id"] for m in sink.metrics()] == [2]
    sink.emit(frame(2))
    for read in (sub.poll, sub.recv, lambda: next(sub)):
        with pytest.raises((Closed, StopIteration)):
            read()
    assert_frame_equal(other.poll(), frame(1, 2))


def test_subscription_close_wakes_blocked_recv() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    errors: list[BaseException] = []
    started = threading.Event()

    def read() -> None:
        started.set()
        try:
            sub.recv(timeout=DEADLINE)
        except BaseException as e:
            errors.append(e)

    reader = threading.Thread(target=read)
    reader.start()
    started.wait(DEADLINE)
    sub.close()
    reader.join(DEADLINE)
    assert isinstance(errors[0], Closed)


def test_kind_follows_live_subscriptions() -> None:
    sink = Sink("out", SCHEMA)
    assert sink.kind == "spsc"
    a = sink.subscribe()
    assert sink.kind == "spsc"
    b = sink.subscribe()
    assert sink.kind == "broadcast"
    a.close()
    assert sink.kind == "spsc"
    b.close()
    assert sink.kind == "spsc" and sink.metrics() == []


def test_dropped_subscription_unsubscribes() -> None:
    sink = Sink("out", SCHEMA)
    sink.subscribe()  # never kept
    gc.collect()
    assert sink.metrics() == []


def test_metrics_lag_and_delivered() -> None:
    sink = Sink("out", SCHEMA)
    a, _b = sink.subscribe(), sink.subscribe()
    sink.emit(frame(1, 2))
    sink.emit(frame(3))
    a.poll()
    sink.emit(frame(4))
    assert sink.metrics() == [
        {"id": 1, "lag_rows": 1, "lag_batches": 1, "rows_delivered": 3, "dropped_rows": 0},
        {"id": 2, "lag_rows": 4, "lag_batches": 3, "rows_delivered": 0, "dropped_rows": 0},
    ]


ARROW_SCHEMA = pl.Schema({"s": pl.String, "x": pl.Float64, "n": pl.Int32, "ts": pl.Datetime("us")})
T0 = dt.datetime(2024, 1, 1, 9, 30)


def arrow_sink() -> tuple[Sink, list[Subscription], pl.DataFrame]:
    """A closed sink whose subscriptions hold two frames with strings, nulls and datetimes."""
    sink = Sink("arrow", ARROW_SCHEMA)
    subs = [sink.subscribe() for _ in range(3)]
    first = pl.DataFrame(
        {"s": ["a", None], "x": [1.5, None], "n": [1, 2], "ts": [T0, None]}, schema=ARROW_SCHEMA
    )
    # Reordered columns and an all-null column: the export still matches the schema.
    second = pl.DataFrame({"ts": [T0 + dt.timedelta(microseconds=1)], "n": [None], "s": ["é"]})
    second = second.with_columns(x=pl.lit(None))
    sink.emit(first)
    sink.emit(second)
    sink.close()
    expected = pl.concat([first, second.select(ARROW_SCHEMA.names()).cast(ARROW_SCHEMA)])
    return sink, subs, expected


def test_arrow_stream_read_by_pyarrow_polars_and_duckdb() -> None:
    sink, (pa_sub, pl_sub, duck_sub), expected = arrow_sink()
    rows = expected.rows()
    assert rows[2] == ("é", None, None, T0 + dt.timedelta(microseconds=1))

    table = pa.RecordBatchReader.from_stream(pa_sub).read_all()
    assert table.schema == sink.arrow_schema
    assert table.schema.field("ts").type == pa.timestamp("us")
    assert list(zip(*table.to_pydict().values(), strict=True)) == rows

    assert_frame_equal(pl.DataFrame(pl_sub), expected)

    assert duckdb.from_arrow(duck_sub).fetchall() == rows
    for sub in (pa_sub, pl_sub, duck_sub):
        assert sub.closed


def test_arrow_stream_pa_table_and_duckdb_sql() -> None:
    _, (a, b, _), expected = arrow_sink()
    assert pl.from_arrow(pa.table(a)).equals(expected)
    con = duckdb.connect()
    assert b.closed is False  # a replacement scan finds the local variable b
    assert con.sql("SELECT * FROM b ORDER BY n NULLS LAST, s").fetchall() == (
        expected.sort("n", "s", nulls_last=True).rows()
    )


def test_arrow_stream_blocks_for_more_data() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    reader = pa.RecordBatchReader.from_stream(sub)
    sink.emit(frame(1))
    assert reader.read_next_batch().to_pydict() == {"k": ["k1"], "v": [1]}
    tables: list[pa.Table] = []
    consumer = threading.Thread(target=lambda: tables.append(reader.read_all()))
    consumer.start()
    sink.emit(frame(2, 3))
    sink.close()
    consumer.join(DEADLINE)
    assert not consumer.is_alive()
    assert tables[0].to_pydict() == {"k": ["k2", "k3"], "v": [2, 3]}


def test_changelog_schema_has_op() -> None:
    sink = Sink("cl", SCHEMA, changelog=True)
    assert sink.schema == pl.Schema({"k": pl.String, "v": pl.Int64, "op": pl.String})
    assert sink.arrow_schema.field("op").type in (pa.large_string(), pa.string())
    sub = sink.subscribe()
    # The engine adds the op column; put it first to check the export reorders.
    sink.emit(frame(1).select(pl.lit("+").alias("op"), "k", "v"))
    sink.close()
    assert pa.table(sub).to_pydict() == {"k": ["k1"], "v": [1], "op": ["+"]}


def test_many_producers_many_subscribers_no_loss_no_duplicates() -> None:
    producers, per_producer, readers = 4, 500, 4
    sink = Sink("out", SCHEMA)
    subs = [sink.subscribe() for _ in range(readers)]
    results: list[list[pl.DataFrame]] = [[] for _ in range(readers)]
    start = threading.Barrier(producers + readers)

    def produce(p: int) -> None:
        start.wait(DEADLINE)
        for i in range(per_producer):
            sink.emit(frame(p * per_producer + i))

    def consume(r: int) -> None:
        start.wait(DEADLINE)
        # Mix the blocking and non-blocking reads.
        while True:
            try:
                out = subs[r].poll() if r % 2 else subs[r].recv(timeout=DEADLINE)
            except Closed:
                return
            if out is not None:
                results[r].append(out)

    threads = [threading.Thread(target=produce, args=(p,)) for p in range(producers)]
    threads += [threading.Thread(target=consume, args=(r,)) for r in range(readers)]
    for t in threads:
        t.start()
    for t in threads[:producers]:
        t.join(DEADLINE)
    sink.close()
    for t in threads[producers:]:
        t.join(DEADLINE)
    assert not any(t.is_alive() for t in threads)
    expected = list(range(producers * per_producer))
    for frames in results:
        values = pl.concat(frames)["v"].to_list()
        assert sorted(values) == expected
        # Each producer's rows arrive in the order it emitted them.
        for p in range(producers):
            mine = [v for v in values if v // per_producer == p]
            assert mine == sorted(mine)


# -- the end of a stream by an engine failure ---------------------------------------------------


def test_close_with_an_error_ends_every_read_with_engine_error() -> None:
    sink = Sink("out", SCHEMA)
    recv_sub, iter_sub, async_sub, arrow_sub = (sink.subscribe() for _ in range(4))
    sink.emit(frame(1, 2))
    cause = ValueError("a view failed")
    sink.close(error=cause)
    sink.close()  # the first close decides how the stream ends

    assert_frame_equal(recv_sub.recv(timeout=DEADLINE), frame(1, 2))  # drained first
    for read in (recv_sub.recv, recv_sub.poll, lambda: recv_sub.recv(timeout=DEADLINE)):
        with pytest.raises(EngineError, match="engine failed") as info:
            read()
        assert info.value.__cause__ is cause

    seen: list[pl.DataFrame] = []
    with pytest.raises(EngineError):
        for f in iter_sub:  # not a silent StopIteration
            seen.append(f)
    assert_frame_equal(pl.concat(seen), frame(1, 2))

    async def read_async() -> list[pl.DataFrame]:
        got = []
        with pytest.raises(EngineError) as info:
            async for f in async_sub:
                got.append(f)
        assert info.value.__cause__ is cause
        return got

    assert_frame_equal(pl.concat(asyncio.run(read_async())), frame(1, 2))

    with pytest.raises(pa.ArrowException, match="engine failed"):
        pa.table(arrow_sub)
    with pytest.raises(EngineError):
        sink.subscribe()


def test_close_with_an_error_wakes_a_blocked_recv() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()
    errors: list[BaseException] = []
    reader = threading.Thread(target=lambda: errors.extend(_raised(sub.recv)), daemon=True)
    reader.start()
    sink.close(error=RuntimeError("boom"))
    reader.join(DEADLINE)
    assert not reader.is_alive()
    assert isinstance(errors[0], EngineError)


def _raised(call) -> list[BaseException]:
    try:
        call()
    except BaseException as exc:
        return [exc]
    return []


# -- async iteration --------------------------------------------------------------------------


def test_async_iteration_waits_without_blocking_the_loop() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()

    async def produce() -> None:  # runs on the same loop: only if the reader yields to it
        for i in range(3):
            await asyncio.sleep(0)
            sink.emit(frame(i))
        await asyncio.sleep(0)
        sink.close()

    async def main() -> list[int]:
        producer = asyncio.create_task(produce())
        values = [v async for f in sub for v in f["v"].to_list()]
        await producer
        return values

    assert asyncio.run(asyncio.wait_for(main(), DEADLINE)) == [0, 1, 2]


def test_async_iteration_is_woken_by_another_thread_and_cancel_loses_nothing() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe()

    async def main() -> pl.DataFrame:
        waiting = asyncio.ensure_future(sub.__anext__())
        await asyncio.sleep(0.01)
        waiting.cancel()  # a cancelled wait takes nothing
        with pytest.raises(asyncio.CancelledError):
            await waiting
        emitter = threading.Thread(target=sink.emit, args=(frame(7),))
        emitter.start()
        got = await sub.__anext__()
        emitter.join(DEADLINE)
        return got

    assert_frame_equal(asyncio.run(asyncio.wait_for(main(), DEADLINE)), frame(7))
    sink.close()

    async def rest() -> list[pl.DataFrame]:
        return [f async for f in sub]

    assert asyncio.run(rest()) == []


# -- lagging subscriptions ----------------------------------------------------------------------


def test_lagging_subscription_drops_its_oldest_frames_and_says_so() -> None:
    sink = Sink("out", SCHEMA)
    lagging, other = sink.subscribe(max_lag_rows=3), sink.subscribe()
    for i in range(10):
        sink.emit(frame(i))
    (lag, full) = sink.metrics()
    assert (lag["lag_rows"], lag["dropped_rows"]) == (3, 7)
    assert (full["lag_rows"], full["dropped_rows"]) == (10, 0)
    with pytest.raises(Lagged, match="7 rows") as info:
        lagging.poll()
    assert info.value.missed == 7 and isinstance(info.value, LaminarError)
    assert_frame_equal(lagging.poll(), frame(7, 8, 9))  # then on, with the newest rows
    sink.emit(frame(10))
    assert_frame_equal(lagging.recv(timeout=DEADLINE), frame(10))  # no Lagged: nothing missed
    assert_frame_equal(other.poll(), frame(*range(11)))


def test_lagging_keeps_a_frame_larger_than_the_bound_alone() -> None:
    sink = Sink("out", SCHEMA)
    sub = sink.subscribe(max_lag_rows=4)
    sink.emit(frame(1, 2))
    sink.emit(frame(*range(10, 20)))  # alone more than the bound: kept, the older frame goes
    assert sink.metrics()[0]["lag_rows"] == 10
    with pytest.raises(Lagged) as info:
        sub.recv(timeout=DEADLINE)
    assert info.value.missed == 2
    assert_frame_equal(sub.recv(timeout=DEADLINE), frame(*range(10, 20)))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "1000", True, None])
def test_max_lag_rows_is_validated(bad) -> None:
    sink = Sink("out", SCHEMA)
    with pytest.raises(ConfigError, match="max_lag_rows"):
        sink.subscribe(max_lag_rows=bad)
    assert sink.metrics() == []


def test_lagging_subscription_of_a_database_sink() -> None:
    """100 k rows emitted as 1000 frames: a subscription never read holds at
    most its bound; one read along loses nothing."""
    with lp.open() as db:
        db.execute("CREATE SOURCE q (i BIGINT NOT NULL)")
        lagging = db.sink("q").subscribe(max_lag_rows=1000)
        reader = db.sink("q").subscribe()
        db.start()
        src = db.source("q")
        for k in range(1000):
            src.push_arrow(pl.DataFrame({"i": range(100 * k, 100 * k + 100)}))
            # In step with the engine, so each frame is one batch of 100 rows.
            got = reader.recv(timeout=DEADLINE)["i"].to_list()
            assert got == list(range(100 * k, 100 * k + 100))
        lag, full = db.metrics()["sinks"]["q"]["subscriptions"]
        assert lag["lag_rows"] <= 1000 and lag["dropped_rows"] == 99_000
        assert full["dropped_rows"] == 0 and full["rows_delivered"] == 100_000
        with pytest.raises(lp.Lagged, match="99000 rows") as info:
            lagging.recv(timeout=DEADLINE)
        assert info.value.missed == 99_000
        assert lagging.recv(timeout=DEADLINE)["i"].to_list() == list(range(99_000, 100_000))
        with pytest.raises(lp.ConfigError):
            db.sink("q").subscribe(max_lag_rows=0)
