"""Event time: watermark = max(ts) - delay, never backwards; late rows dropped and counted."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest
from conftest import TRADES_DDL, read_all

import laminar_polars as lp

T0 = dt.datetime(2024, 1, 1, 9, 30)
DELAY = dt.timedelta(milliseconds=100)
EPOCH = dt.datetime(1970, 1, 1)
SCHEMA = pa.schema({"symbol": pa.string(), "price": pa.float64(), "qty": pa.int64(),
                    "ts": pa.timestamp("us")})


def ms(n: int) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=n)


def micros(ts: dt.datetime) -> int:
    return (ts - EPOCH) // dt.timedelta(microseconds=1)


def row(n: int, qty: int | None = None) -> tuple:
    return (f"S{n}", float(n), n if qty is None else qty, ms(n))


def _table(ts_ms: list[int]) -> pa.Table:
    return pa.table({"symbol": [f"S{t}" for t in ts_ms], "price": [float(t) for t in ts_ms],
                     "qty": ts_ms, "ts": [ms(t) for t in ts_ms]}, schema=SCHEMA)


def stats(db) -> dict:
    return db.metrics()["sources"]["trades"]


@pytest.fixture
def trades(db):
    db.execute(TRADES_DDL)
    sub = db.sink("trades").subscribe()
    return db, db.source("trades"), sub


def test_watermark_is_max_ts_minus_delay_and_monotonic(trades):
    db, src, _ = trades
    assert stats(db)["watermark"] == dt.datetime.min  # no event time seen yet
    src.push(row(1000))
    assert stats(db)["watermark"] == ms(1000) - DELAY
    src.push(row(1500))
    assert stats(db)["watermark"] == ms(1500) - DELAY
    src.push(row(1450))  # older than the max, not late: the watermark stays
    assert stats(db)["watermark"] == ms(1400)
    assert stats(db)["late"] == 0
    assert isinstance(stats(db)["watermark"], dt.datetime)


def test_the_watermark_is_always_a_datetime(db):
    """Sources and views report one type: datetime.min before any event time,
    datetime.max once the input ended (as Flink's Long.MIN_VALUE / MAX_VALUE)."""
    db.execute(TRADES_DDL + "; CREATE MATERIALIZED VIEW v AS SELECT symbol, qty FROM trades")
    sub = db.sink("v").subscribe()
    db.start()

    def watermarks() -> list:
        metrics = db.metrics()
        return [metrics["sources"]["trades"]["watermark"], metrics["views"]["v"]["watermark"]]

    assert watermarks() == [dt.datetime.min, dt.datetime.min]
    db.source("trades").push(row(1000))
    assert sub.recv(timeout=30)["qty"].to_list() == [1000]
    assert watermarks() == [ms(900), ms(900)]
    db.stop()
    assert watermarks() == [dt.datetime.max, dt.datetime.max]
    assert all(type(w) is dt.datetime for w in watermarks())


def test_explicit_watermark_datetime_and_int_micros_never_back(trades):
    db, src, _ = trades
    src.watermark(ms(5000))
    assert stats(db)["watermark"] == ms(5000)
    src.watermark(micros(ms(7000)))
    assert stats(db)["watermark"] == ms(7000)
    src.watermark(ms(6000))  # never moves back
    src.watermark(micros(ms(100)))
    assert stats(db)["watermark"] == ms(7000)
    src.push(row(7050))  # max(ts) - delay = 6950 < 7000: explicit one wins
    assert stats(db)["watermark"] == ms(7000)
    src.push(row(8000))
    assert stats(db)["watermark"] == ms(7900)
    src.watermark(ms(7850))  # below the derived watermark: no effect
    assert stats(db)["watermark"] == ms(7900)


def test_explicit_watermark_makes_older_rows_late(trades):
    db, src, sub = trades
    src.watermark(ms(2000))
    src.push(row(1999))  # late
    src.push(row(2000))  # exactly at the watermark: not late
    src.push(row(2500))
    db.stop()
    assert stats(db)["late"] == 1
    assert read_all(sub)["qty"].to_list() == [2000, 2500]


def test_close_moves_watermark_to_infinity_and_refuses_pushes(trades):
    db, src, sub = trades
    src.push(row(10))
    src.close()
    assert stats(db)["watermark"] == dt.datetime.max  # the input ended
    src.watermark(ms(99))  # cannot bring it back
    assert stats(db)["watermark"] == dt.datetime.max
    later = ms(10**9)
    batch = pa.table({"symbol": ["X"], "price": [1.0], "qty": [1], "ts": [later]}, schema=SCHEMA)
    for push in (lambda: src.push(("X", 1.0, 1, later)),
                 lambda: src.try_push(("X", 1.0, 1, later)),
                 lambda: src.push_batch([("X", 1.0, 1, later)]),
                 lambda: src.push_arrow(batch)):
        with pytest.raises(lp.Closed):
            push()
    db.stop()
    assert read_all(sub)["qty"].to_list() == [10]
    assert stats(db)["late"] == 0


def test_late_rows_pushed_one_by_one_are_dropped_and_counted(trades):
    db, src, sub = trades
    db.start()
    sent = [1000, 1200, 1099, 1100, 1050, 1300, 1201, 1199, 2000, 1900, 1899]
    for n in sent:
        src.push(row(n))
    db.stop()
    # watermark before each row: -inf, 900, 1100, 1100, 1100, 1100, 1200, 1200, 1200, 1900, 1900
    kept = [1000, 1200, 1100, 1300, 1201, 2000, 1900]
    assert read_all(sub)["qty"].to_list() == kept
    assert stats(db)["late"] == len(sent) - len(kept)
    assert stats(db)["pushed"] == len(kept)


def test_late_rows_in_push_batch_are_dropped_and_counted(trades):
    db, src, sub = trades
    src.push(row(5000))
    src.push_batch([row(4950), row(4899), row(4900), row(6000), row(5899), row(5900)])
    db.stop()
    assert read_all(sub)["qty"].to_list() == [5000, 4950, 4900, 6000, 5900]
    assert stats(db)["late"] == 2


def _expected_survivors(ts_ms: list[int], watermark_ms: float) -> list[int]:
    """Row i is late iff ts[i] < max(watermark before the batch, max(ts[:i]) - delay)."""
    delay_ms = DELAY // dt.timedelta(milliseconds=1)
    kept, running = [], float("-inf")
    for t in ts_ms:
        if t >= max(watermark_ms, running - delay_ms):
            kept.append(t)
        running = max(running, t)
    return kept


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_late_rows_inside_one_arrow_batch(trades, seed):
    db, src, sub = trades
    db.start()
    src.push(row(1000))  # watermark 900 before the first batch
    rng = random.Random(seed)
    expected = [1000]
    watermark = 900
    for _ in range(3):  # each batch is judged against the watermark the previous left
        ts_ms = [rng.randrange(watermark - 300, watermark + 600) for _ in range(400)]
        ts_ms[5] = ts_ms[4] - 101  # certainly late relative to the row before it
        ts_ms[6] = watermark + 500
        ts_ms[7] = max(ts_ms[:7]) - 100  # exactly at the running watermark: kept
        survivors = _expected_survivors(ts_ms, watermark)
        assert 0 < len(survivors) < len(ts_ms)
        assert ts_ms[7] in survivors
        expected += survivors
        src.push_arrow(_table(ts_ms))
        watermark = max(watermark, max(ts_ms) - 100)
        assert stats(db)["watermark"] == ms(watermark)
    late_seen = stats(db)["late"]
    db.stop()
    got = read_all(sub)
    assert got["qty"].to_list() == expected
    assert got["ts"].to_list() == [ms(t) for t in expected]
    assert late_seen == 1 + 3 * 400 - len(expected)


def test_arrow_batch_late_against_rows_pushed_before(trades):
    db, src, sub = trades
    src.push(row(3000))  # watermark 2900
    src.push_arrow(_table([2899, 2900, 3100, 2999]))
    src.push(row(2999))  # the batch moved the watermark to 3000
    src.push(row(3000))
    db.stop()
    assert read_all(sub)["qty"].to_list() == [3000, 2900, 3100, 3000]
    assert stats(db)["late"] == 3


def test_late_rows_in_a_sliced_multi_chunk_arrow_table(trades):
    db, src, sub = trades
    table = pa.concat_tables([_table([1, 2, 3, 1000, 500, 899]).slice(3),
                              _table([7, 900, 950, 2000, 1899, 1900]).slice(1)])
    assert [c.offset for c in table["ts"].chunks] == [3, 1]
    src.push_arrow(table)
    db.stop()
    assert read_all(sub)["qty"].to_list() == [1000, 900, 950, 2000, 1900]
    assert stats(db)["late"] == 3


def test_aware_datetime_watermark_is_taken_as_utc(trades):
    db, src, _ = trades
    plus_two = dt.timezone(dt.timedelta(hours=2))
    src.watermark(dt.datetime(2024, 1, 1, 13, tzinfo=plus_two))
    assert stats(db)["watermark"] == dt.datetime(2024, 1, 1, 11)


def test_whole_arrow_batch_late_enqueues_nothing(trades):
    db, src, sub = trades
    src.watermark(ms(10_000))
    src.push_arrow(_table([1, 2]))
    assert src.pending == 0
    assert stats(db)["late"] == 2
    db.stop()
    assert read_all(sub).height == 0


def test_source_without_watermark_never_counts_late_rows(db):
    db.execute("CREATE SOURCE plain (v BIGINT, ts TIMESTAMP)")
    sub = db.sink("plain").subscribe()
    src = db.source("plain")
    assert db.metrics()["sources"]["plain"]["watermark"] == dt.datetime.min
    src.push((1, ms(5000)))
    src.push((2, ms(0)))
    assert db.metrics()["sources"]["plain"]["watermark"] == dt.datetime.min  # no WATERMARK
    src.watermark(ms(10_000))  # explicit watermark: still no late rows
    assert db.metrics()["sources"]["plain"]["watermark"] == ms(10_000)
    src.push_batch([(3, ms(1)), (4, None)])
    src.push_arrow(pa.table({"v": [5, 6], "ts": pa.array([ms(2), ms(9999)], pa.timestamp("us"))}))
    db.stop()
    assert read_all(sub)["v"].to_list() == [1, 2, 3, 4, 5, 6]
    assert db.metrics()["sources"]["plain"]["late"] == 0
