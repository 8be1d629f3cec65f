"""topology(), metrics(), SHOW / DESCRIBE / DROP, and the ways to open a database."""

from __future__ import annotations

import datetime as dt
import gc
import time

import polars as pl
import pytest
from conftest import TRADES_DDL, read_all

import laminar_polars as lp

T0 = dt.datetime(2024, 1, 1, 9, 30)
DEADLINE = 30.0


def at(ms: int) -> dt.datetime:
    return T0 + dt.timedelta(milliseconds=ms)


def test_source_channel_spsc_then_mpsc_after_clone(db):
    db.execute(TRADES_DDL + "; CREATE SINK raw FROM trades")
    src = db.source("trades")
    assert src.channel == "spsc"
    assert db.topology() == {
        "sources": {"trades": {"channel": "spsc", "producers": 1, "capacity": 65536,
                               "readers": ["raw"]}},
        "views": {},
        "sinks": {"raw": {"input": "trades", "channel": "spsc", "subscriptions": 0}},
    }
    clone = src.clone()
    assert src.channel == clone.channel == "mpsc"
    assert db.topology()["sources"]["trades"]["channel"] == "mpsc"
    assert db.topology()["sources"]["trades"]["producers"] == 2


def test_source_channel_mpsc_after_a_second_handle(db):
    db.execute("CREATE SOURCE a (x BIGINT); CREATE SOURCE b (x BIGINT)")
    first = db.source("a")
    db.source("b")
    assert db.topology()["sources"]["a"]["channel"] == "spsc"
    second = db.source("a")
    assert first.channel == second.channel == "mpsc"
    channels = {n: s["channel"] for n, s in db.topology()["sources"].items()}
    assert channels == {"a": "mpsc", "b": "spsc"}  # the other source is untouched
    sub = db.sink("a").subscribe()
    first.push((1,))
    second.push((2,))
    db.stop()
    assert read_all(sub)["x"].to_list() == [1, 2]


def test_sink_channel_spsc_broadcast_spsc(db):
    db.execute(TRADES_DDL + "; CREATE SINK raw FROM trades")

    def sink() -> dict:
        return db.topology()["sinks"]["raw"]

    one = db.sink("raw").subscribe()
    assert sink() == {"input": "trades", "channel": "spsc", "subscriptions": 1}
    two = db.sink("raw").subscribe()
    assert sink() == {"input": "trades", "channel": "broadcast", "subscriptions": 2}
    one.close()
    assert sink() == {"input": "trades", "channel": "spsc", "subscriptions": 1}
    three = db.sink("raw").subscribe()
    assert sink()["channel"] == "broadcast"
    del three  # dropped without close(): unsubscribed once collected
    gc.collect()
    assert sink() == {"input": "trades", "channel": "spsc", "subscriptions": 1}
    db.source("trades").push(("A", 1.0, 1, T0))
    db.stop()
    assert read_all(two)["symbol"].to_list() == ["A"]
    with pytest.raises(lp.Closed):
        one.recv(timeout=1)


def test_source_metrics_are_exact(db):
    db.execute(TRADES_DDL + " WITH (buffer_size = 4, backpressure = 'reject')")
    db.execute("CREATE SOURCE d (x BIGINT) WITH (buffer_size = 2, backpressure = 'drop_oldest')")
    sub = db.sink("trades").subscribe()
    src = db.source("trades")
    src.push(("A", 1.0, 1, at(1000)))
    src.push(("B", 2.0, 2, at(899)))  # late: watermark is 900
    src.push_batch([("C", 3.0, 3, at(900)), ("D", 4.0, 4, at(2000))])
    src.push(("E", 5.0, 5, at(1950)))
    assert src.try_push(("X", 5.0, 5, at(2000))) is False  # full: 4 of 4
    with pytest.raises(lp.Full):
        src.push(("F", 6.0, 6, at(2001)))
    for x in range(5):
        db.source("d").push((x,))
    metrics = db.metrics()["sources"]
    assert metrics["trades"] == {"pushed": 4, "dropped": 0, "late": 1, "rejected": 2,
                                 "pending": 4, "watermark": at(1900), "checkpointed_rows": 0}
    assert metrics["d"] == {"pushed": 5, "dropped": 3, "late": 0, "rejected": 0,
                            "pending": 2, "watermark": dt.datetime.min, "checkpointed_rows": 0}
    db.stop()
    assert db.metrics()["sources"]["trades"]["pending"] == 0
    assert db.metrics()["sources"]["trades"]["watermark"] == dt.datetime.max
    assert db.metrics()["engine"]["state"] == "stopped"
    assert read_all(sub)["symbol"].to_list() == ["A", "C", "D", "E"]


def _wait_for_lag(db, sink: str, rows: int) -> list[dict]:
    deadline = time.monotonic() + DEADLINE
    while True:
        subs = db.metrics()["sinks"][sink]["subscriptions"]
        if all(s["lag_rows"] == rows for s in subs):
            return subs
        assert time.monotonic() < deadline, f"lag never reached {rows}: {subs}"
        time.sleep(0.005)


def test_subscription_lag_rises_until_read(db):
    db.execute(TRADES_DDL + "; CREATE SINK raw FROM trades")
    fast = db.sink("raw").subscribe()
    slow = db.sink("raw").subscribe()
    db.start()
    src = db.source("trades")
    for i in range(7):
        src.push((f"S{i}", float(i), i, at(i)))
    subs = _wait_for_lag(db, "raw", 7)
    assert [s["rows_delivered"] for s in subs] == [0, 0]
    assert all(s["lag_batches"] >= 1 for s in subs)
    assert fast.recv(timeout=DEADLINE)["qty"].to_list() == list(range(7))
    fast_m, slow_m = db.metrics()["sinks"]["raw"]["subscriptions"]
    assert (fast_m["lag_rows"], fast_m["lag_batches"], fast_m["rows_delivered"]) == (0, 0, 7)
    assert (slow_m["lag_rows"], slow_m["rows_delivered"]) == (7, 0)  # its own pace
    assert slow.poll()["qty"].to_list() == list(range(7))
    assert db.metrics()["sinks"]["raw"]["subscriptions"][1]["lag_rows"] == 0


def test_show_and_describe_are_exact(db):
    db.execute(TRADES_DDL + "; CREATE SOURCE b (flag BOOLEAN, d DATE, f REAL, n SMALLINT)"
               "; CREATE SINK z FROM b; CREATE SINK raw FROM trades")
    assert db.execute("SHOW SOURCES").equals(pl.DataFrame({"name": ["b", "trades"]}))
    assert db.execute("SHOW SINKS").equals(pl.DataFrame({"name": ["raw", "z"]}))
    described = db.execute("DESCRIBE trades")
    expected = pl.DataFrame({
        "column": ["symbol", "price", "qty", "ts"],
        "type": ["VARCHAR", "DOUBLE", "BIGINT", "TIMESTAMP"],
        "nullable": [False, True, True, False],
        "watermark_delay": [None, None, None, dt.timedelta(milliseconds=100)],
    }, schema={"column": pl.String, "type": pl.String, "nullable": pl.Boolean,
               "watermark_delay": pl.Duration("us")})
    assert described.schema == expected.schema and described.equals(expected)
    other = db.execute("DESCRIBE b")
    assert other.select("column", "type", "nullable").rows() == [
        ("flag", "BOOLEAN", True), ("d", "DATE", True), ("f", "REAL", True),
        ("n", "SMALLINT", True)]
    assert other["watermark_delay"].null_count() == 4


def test_drop_sink_then_source(db):
    db.execute(TRADES_DDL + "; CREATE SINK raw FROM trades")
    sub = db.sink("raw").subscribe()
    src = db.source("trades")
    with pytest.raises(lp.CatalogError):
        db.execute("DROP SOURCE trades")  # still read by raw
    db.execute("DROP SINK raw")
    assert list(sub) == []  # the subscription ends with its sink
    assert db.execute("SHOW SINKS").height == 0
    assert "raw" not in db.topology()["sinks"]
    assert db.topology()["sources"]["trades"]["readers"] == []
    db.execute("DROP SOURCE trades")
    assert db.execute("SHOW SOURCES").height == 0
    assert db.topology() == {"sources": {}, "views": {}, "sinks": {}}
    assert "trades" not in db.metrics()["sources"]
    with pytest.raises(lp.Closed):
        src.push(("A", 1.0, 1, T0))
    with pytest.raises(lp.CatalogError):
        db.sink("raw")
    db.execute("DROP SINK IF EXISTS raw; DROP SOURCE IF EXISTS trades")
    db.execute(TRADES_DDL)  # the name is free again
    assert db.execute("SHOW SOURCES")["name"].to_list() == ["trades"]


def test_with_block_stops_on_exit():
    with lp.open() as db:
        db.execute(TRADES_DDL)
        sub = db.sink("trades").subscribe()
        db.start()
        db.source("trades").push(("A", 1.0, 1, T0))
        src = db.source("trades")
    frames = list(sub)  # iteration ends: the database stopped
    assert pl.concat(frames)["symbol"].to_list() == ["A"]
    assert db.metrics()["engine"]["state"] == "stopped"
    with pytest.raises(lp.Closed):
        src.push(("B", 1.0, 1, T0))


@pytest.mark.parametrize("opener", ["open", "open_with_config"])
def test_seed_spellings_open_a_working_database(opener):
    db = (lp.LaminarDB.open() if opener == "open"
          else lp.LaminarDB.open_with_config(lp.Config(buffer_size=8)))
    assert isinstance(db, lp.LaminarDB)
    capacity = 65536 if opener == "open" else 8
    assert db.config.buffer_size == capacity
    db.execute("CREATE SOURCE n (i BIGINT)")
    assert db.topology()["sources"]["n"]["capacity"] == capacity
    assert db.source("n").capacity == capacity
    sub = db.sink("n").subscribe()
    db.start()
    src = db.source("n")
    for i in range(100):  # wraps the 8-row ring many times
        src.push((i,))
    db.stop()
    assert read_all(sub)["i"].to_list() == list(range(100))
