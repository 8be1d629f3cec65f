"""push_arrow from every Arrow-speaking library; subscriptions read back as Arrow streams."""

from __future__ import annotations

import datetime as dt
import threading

import duckdb
import nanoarrow as na
import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import TRADES_DDL, read_all

ALL_TYPES = """
CREATE SOURCE everything (
    s VARCHAR, f8 DOUBLE, f4 REAL, i8 BIGINT, i4 INTEGER, i2 SMALLINT,
    b BOOLEAN, ts TIMESTAMP, d DATE
)"""
NAMES = ["s", "f8", "f4", "i8", "i4", "i2", "b", "ts", "d"]
PL_SCHEMA = pl.Schema({"s": pl.String, "f8": pl.Float64, "f4": pl.Float32, "i8": pl.Int64,
                       "i4": pl.Int32, "i2": pl.Int16, "b": pl.Boolean,
                       "ts": pl.Datetime("us"), "d": pl.Date})
PA_TYPES = [pa.string(), pa.float64(), pa.float32(), pa.int64(), pa.int32(), pa.int16(),
            pa.bool_(), pa.timestamp("us"), pa.date32()]
SQL_TYPES = ["VARCHAR", "DOUBLE", "REAL", "BIGINT", "INTEGER", "SMALLINT", "BOOLEAN",
             "TIMESTAMP", "DATE"]
EPOCH = dt.datetime(1970, 1, 1)
ROWS = [
    ("a", 1.5, 2.25, 2**62, -(2**31), 2**15 - 1, True,
     dt.datetime(2024, 2, 29, 23, 59, 59, 999_999), dt.date(2024, 2, 29)),
    ("ünïcødé ✓ and a string longer than twelve bytes", -0.5, -1.0, -(2**63), 2**31 - 1,
     -(2**15), False, dt.datetime(1969, 12, 31, 23, 59, 59, 1), dt.date(1900, 1, 1)),
    (None, None, None, None, None, None, None, None, None),
    ("", float("inf"), 0.5, 0, 0, 0, False, EPOCH, dt.date(1970, 1, 1)),
    ("z", None, 3.0, None, 7, None, True, None, dt.date(2000, 1, 1)),
]
EXPECTED = pl.DataFrame(ROWS, schema=PL_SCHEMA, orient="row")
COLUMNS = {name: [r[i] for r in ROWS] for i, name in enumerate(NAMES)}


def _pyarrow_table():
    return pa.table({n: pa.array(COLUMNS[n], t) for n, t in zip(NAMES, PA_TYPES, strict=True)})


def _pandas():
    dtypes = ["string", "Float64", "Float32", "Int64", "Int32", "Int16", "boolean",
              "datetime64[us]", pd.ArrowDtype(pa.date32())]
    return pd.DataFrame({n: pd.array(COLUMNS[n], dtype=t)
                         for n, t in zip(NAMES, dtypes, strict=True)})


def _sql_literal(value, sql_type: str) -> str:
    if value is None:
        return f"NULL::{sql_type}"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dt.date, float)):
        return f"'{value}'::{sql_type}"
    return f"({value})::{sql_type}"


def _duckdb():
    values = ", ".join(
        "(" + ", ".join(_sql_literal(v, t) for v, t in zip(r, SQL_TYPES, strict=True)) + ")"
        for r in ROWS)
    return duckdb.sql(f"SELECT * FROM (VALUES {values}) t({', '.join(NAMES)})")


def _nanoarrow_struct():
    """A struct CArray built with nanoarrow alone (timestamps/dates as their integers)."""
    def raw(value):
        if isinstance(value, dt.datetime):
            return (value - EPOCH) // dt.timedelta(microseconds=1)
        if isinstance(value, dt.date):
            return (value - dt.date(1970, 1, 1)).days
        return value
    types = [na.string(), na.float64(), na.float32(), na.int64(), na.int32(), na.int16(),
             na.bool_(), na.timestamp("us"), na.date32()]
    children = [na.c_array([raw(v) for v in COLUMNS[n]], t)
                for n, t in zip(NAMES, types, strict=True)]
    schema = na.struct(dict(zip(NAMES, types, strict=True)))
    return na.c_array_from_buffers(schema, len(ROWS), [None], children=children)


PRODUCERS = {
    "pyarrow_table": _pyarrow_table,
    "pyarrow_record_batch": lambda: _pyarrow_table().to_batches()[0],
    "polars": lambda: pl.DataFrame(ROWS, schema=PL_SCHEMA, orient="row"),
    "pandas": _pandas,
    "duckdb": _duckdb,
    "nanoarrow_c_array": _nanoarrow_struct,  # __arrow_c_array__ only
    "nanoarrow_c_array_stream": lambda: na.c_array_stream(_nanoarrow_struct()),
    "nanoarrow_array": lambda: na.Array(_nanoarrow_struct()),
}


@pytest.mark.parametrize("producer", list(PRODUCERS))
def test_push_arrow_from_every_library_every_type(db, producer):
    data = PRODUCERS[producer]()
    protocol = "__arrow_c_stream__" if producer != "nanoarrow_c_array" else "__arrow_c_array__"
    assert hasattr(data, protocol)
    db.execute(ALL_TYPES)
    sub = db.sink("everything").subscribe()
    db.start()
    db.source("everything").push_arrow(data)
    db.stop()
    got = read_all(sub)
    assert got.schema == PL_SCHEMA
    assert got.equals(EXPECTED)
    assert got["f8"].to_list()[1] == -0.5 and got["f8"].to_list()[3] == float("inf")


def test_pandas_default_dtypes_are_cast(db):
    """Plain pandas columns: numpy float64 (NaN for null), datetime64[ns], object dates."""
    db.execute("CREATE SOURCE p (s VARCHAR, f8 DOUBLE, i8 BIGINT, ts TIMESTAMP, d DATE)")
    sub = db.sink("p").subscribe()
    frame = pd.DataFrame({"s": ["a", None], "f8": [1.5, None], "i8": [3, 4],
                          "ts": pd.to_datetime(["2024-01-01 00:00:00.000001", None]).astype(
                              "datetime64[ns]"),
                          "d": [dt.date(2024, 1, 2), None]})
    db.source("p").push_arrow(frame)
    db.stop()
    got = read_all(sub)
    assert got.to_dict(as_series=False) == {
        "s": ["a", None], "f8": [1.5, None], "i8": [3, 4],
        "ts": [dt.datetime(2024, 1, 1, 0, 0, 0, 1), None], "d": [dt.date(2024, 1, 2), None]}


def _filled_subscriptions(db, n: int):
    db.execute(ALL_TYPES)
    subs = [db.sink("everything").subscribe() for _ in range(n)]
    src = db.source("everything")
    db.start()
    src.push(ROWS[0])
    src.push_arrow(_pyarrow_table().slice(1, 3))  # several frames in the stream
    src.push(ROWS[4])
    db.stop()
    return subs


def test_subscription_read_back_by_every_library(db):
    via_pyarrow, via_polars, via_pandas, via_duckdb = _filled_subscriptions(db, 4)
    table = pa.RecordBatchReader.from_stream(via_pyarrow).read_all()
    assert table.column_names == NAMES
    assert pl.from_arrow(table).equals(EXPECTED)
    assert table.to_pylist() == [dict(zip(NAMES, r, strict=True)) for r in ROWS]

    frame = pl.DataFrame(via_polars)
    assert frame.schema == PL_SCHEMA and frame.equals(EXPECTED)

    reader = pd.DataFrame.from_arrow if hasattr(pd.DataFrame, "from_arrow") else (
        lambda s: pa.table(s).to_pandas())
    pandas_frame = reader(via_pandas)
    pd.testing.assert_frame_equal(pandas_frame, EXPECTED.to_arrow().to_pandas())
    assert pandas_frame["s"].tolist()[:2] == [ROWS[0][0], ROWS[1][0]]

    con = duckdb.connect()
    con.execute("SET threads = 1")
    assert con.from_arrow(via_duckdb).fetchall() == ROWS


def test_subscription_stream_read_in_a_thread_while_running(db):
    db.execute(ALL_TYPES)
    sub = db.sink("everything").subscribe()
    result: list = []
    reader = threading.Thread(
        target=lambda: result.append(pa.RecordBatchReader.from_stream(sub).read_all()),
        daemon=True)
    reader.start()
    db.start()
    src = db.source("everything")
    for row in ROWS:
        src.push(row)
    src.push_arrow(_pyarrow_table())
    db.stop()  # ends the stream
    reader.join(30)
    assert not reader.is_alive()
    assert pl.from_arrow(result[0]).equals(pl.concat([EXPECTED, EXPECTED]))


def test_push_arrow_is_zero_copy_for_fixed_width_columns(db):
    """True today: the float64, int64 and timestamp buffers a subscriber's Polars
    frame exposes through ``Series.to_arrow()`` are the very buffers of the pushed
    pyarrow table (no rechunk or copy between push_arrow and the subscriber)."""
    db.execute(TRADES_DDL)
    sub = db.sink("trades").subscribe()
    n = 10_000
    table = pa.table({"symbol": ["x"] * n, "price": np.arange(n, dtype=np.float64) / 4,
                      "qty": np.arange(n, dtype=np.int64),
                      "ts": pa.array(np.arange(n, dtype=np.int64) * 1000, pa.timestamp("us"))})
    addresses = {c: table[c].chunks[0].buffers()[1].address for c in ("price", "qty", "ts")}
    db.start()
    db.source("trades").push_arrow(table)
    frame = sub.recv(timeout=30)
    assert frame.height == n and frame["price"].n_chunks() == 1
    for column, address in addresses.items():
        assert frame[column].to_arrow().buffers()[1].address == address, column
    assert frame["price"].to_list() == (np.arange(n) / 4).tolist()
    db.stop()


def test_rows_and_arrow_batches_interleaved_keep_order(db):
    db.execute("CREATE SOURCE o (i BIGINT NOT NULL, s VARCHAR) WITH (buffer_size = 16)")
    sub = db.sink("o").subscribe()
    db.start()
    src = db.source("o")
    i = 0
    for step in range(300):
        if step % 3 == 0:
            size = 1 + step % 7
            src.push_arrow(pa.table({"i": list(range(i, i + size)),
                                     "s": [f"b{k}" for k in range(i, i + size)]}))
            i += size
        elif step % 3 == 1:
            src.push((i, f"r{i}"))
            i += 1
        else:
            src.push_batch([(i, f"r{i}"), (i + 1, f"r{i + 1}")])
            i += 2
    db.stop()
    got = read_all(sub)
    assert got["i"].to_list() == list(range(i))
    assert [s[1:] for s in got["s"].to_list()] == [str(k) for k in range(i)]
