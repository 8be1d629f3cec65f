"""Sink / Subscription: broadcast, blocking receive, end of stream, Arrow export.

Timeouts here are only deadlines that fail a hung test, never speed measurements.
"""

from __future__ import annotations

import datetime as dt
import gc
import threading

import duckdb
import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

from laminar_polars.errors import Closed, LaminarError, Timeout
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
        {"id": 1, "lag_rows": 1, "lag_batches": 1, "rows_delivered": 3},
        {"id": 2, "lag_rows": 4, "lag_batches": 3, "rows_delivered": 0},
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
