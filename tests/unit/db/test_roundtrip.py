"""Rows in == rows out, through sources, a sink and subscriptions."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import NamedTuple

import polars as pl
import pytest
from conftest import TRADES_DDL, read_all

import laminar_polars as lp

ALL_TYPES = """
CREATE SOURCE everything (
    s VARCHAR, f8 DOUBLE, f4 REAL, i8 BIGINT, i4 INTEGER, i2 SMALLINT,
    b BOOLEAN, ts TIMESTAMP, d DATE
)"""


def test_every_type_round_trips_exactly(db):
    db.execute(ALL_TYPES + "; CREATE SINK out FROM everything")
    sub = db.sink("out").subscribe()
    db.start()
    src = db.source("everything")
    rows = [
        ("a", 1.5, 2.25, 2**62, -(2**31), 2**15 - 1, True,
         dt.datetime(2024, 2, 29, 23, 59, 59, 999_999), dt.date(2024, 2, 29)),
        ("ünïcødé ✓ and a string longer than twelve bytes", -0.0, -1.0, -(2**63), 2**31 - 1,
         -(2**15), False, dt.datetime(1969, 12, 31, 23, 59, 59, 1), dt.date(1900, 1, 1)),
        (None, None, None, None, None, None, None, None, None),
        ("", float("inf"), 0.1, 0, 0, 0, False, 0, 0),
    ]
    for row in rows:
        src.push(row)
    db.stop()
    got = read_all(sub)
    expected = pl.DataFrame(
        [[*r[:7],
          r[7] if not isinstance(r[7], int) else dt.datetime(1970, 1, 1),
          r[8] if not isinstance(r[8], int) else dt.date(1970, 1, 1)]
         for r in rows],
        schema={"s": pl.String, "f8": pl.Float64, "f4": pl.Float32, "i8": pl.Int64,
                "i4": pl.Int32, "i2": pl.Int16, "b": pl.Boolean, "ts": pl.Datetime("us"),
                "d": pl.Date},
        orient="row",
    )
    assert got.schema == expected.schema
    assert got.equals(expected)


def test_timestamps_from_datetimes_and_int_micros(db):
    db.execute("CREATE SOURCE t (ts TIMESTAMP)")
    sub = db.sink("t").subscribe()
    src = db.source("t")
    aware = dt.datetime(2024, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    src.push((aware,))
    src.push((dt.datetime(2024, 1, 1, 10),))
    src.push((1_704_103_200_000_000,))
    db.stop()
    assert read_all(sub)["ts"].to_list() == [dt.datetime(2024, 1, 1, 10)] * 3


def test_push_forms_tuple_dict_dataclass_namedtuple(db):
    db.execute(TRADES_DDL)
    sub = db.sink("trades").subscribe()

    @dataclasses.dataclass
    class Trade:
        symbol: str
        price: float | None
        qty: int
        ts: dt.datetime

    class TradeTuple(NamedTuple):
        symbol: str
        price: float
        qty: int
        ts: dt.datetime

    t0 = dt.datetime(2024, 1, 1)
    db.source("trades", Trade).push(Trade("A", None, 1, t0))
    db.source("trades", TradeTuple).push(TradeTuple("B", 2.0, 2, t0))
    src = db.source("trades")
    src.push({"symbol": "C", "qty": 3, "ts": t0})  # a missing key is null
    src.push(["D", 4.0, 4, t0])
    src.push_batch([("E", 5.0, 5, t0), {"symbol": "F", "price": 6.0, "qty": 6, "ts": t0}])
    db.stop()
    got = read_all(sub)
    assert got["symbol"].to_list() == list("ABCDEF")
    assert got["price"].to_list() == [None, 2.0, None, 4.0, 5.0, 6.0]
    assert got["qty"].to_list() == [1, 2, 3, 4, 5, 6]


def test_record_type_is_checked_against_the_schema(db):
    db.execute(TRADES_DDL)

    @dataclasses.dataclass
    class Wrong:
        symbol: str
        price: str  # the column is DOUBLE
        qty: int
        ts: dt.datetime

    @dataclasses.dataclass
    class Short:
        symbol: str

    with pytest.raises(lp.SchemaError, match="price"):
        db.source("trades", Wrong)
    with pytest.raises(lp.SchemaError, match="fields"):
        db.source("trades", Short)


def test_order_is_preserved_and_ring_wraps_many_times(db):
    db.execute("CREATE SOURCE seq (i BIGINT NOT NULL, s VARCHAR) WITH (buffer_size = 64)")
    sub = db.sink("seq").subscribe()
    db.start()
    src = db.source("seq")
    n = 20_000
    for i in range(n):
        src.push((i, f"row-{i}-" + "x" * (i % 40)))
    db.stop()
    got = read_all(sub)
    assert got["i"].to_list() == list(range(n))
    assert got["s"].to_list() == [f"row-{i}-" + "x" * (i % 40) for i in range(n)]


def test_subscriber_sees_only_rows_after_it_subscribed(db):
    db.execute("CREATE SOURCE n (i BIGINT); CREATE SINK out FROM n")
    early = db.sink("out").subscribe()
    db.start()
    src = db.source("n")
    src.push((1,))
    assert early.recv(timeout=30)["i"].to_list() == [1]
    late = db.sink("out").subscribe()
    src.push((2,))
    db.stop()
    assert read_all(early)["i"].to_list() == [2]
    assert read_all(late)["i"].to_list() == [2]


def test_changelog_sink_of_a_source_marks_inserts(db):
    db.execute("CREATE SOURCE n (i BIGINT)")
    sub = db.create_sink("log", "n", changelog=True).subscribe()
    db.source("n").push_batch([(1,), (2,)])
    db.stop()
    got = read_all(sub)
    assert got.to_dict(as_series=False) == {"i": [1, 2], "op": ["insert", "insert"]}
