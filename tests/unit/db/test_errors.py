"""Bad input raises its named error and leaves accepted rows untouched."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pyarrow as pa
import pytest
from conftest import TRADES_DDL, read_all

import laminar_polars as lp

T0 = dt.datetime(2024, 1, 1)
GOOD = [("AAPL", 1.0, 1, T0), ("MSFT", 2.0, 2, T0 + dt.timedelta(seconds=1))]


def _good_then(db, bad_action):
    """Push two good rows, run the bad action, push one more; all 3 must arrive."""
    db.execute(TRADES_DDL)
    sub = db.sink("trades").subscribe()
    src = db.source("trades")
    src.push(GOOD[0])
    src.push(GOOD[1])
    pending = src.pending
    bad_action(src)
    assert src.pending == pending
    src.push(("IBM", 3.0, 3, T0 + dt.timedelta(seconds=2)))
    db.stop()
    got = read_all(sub)
    assert got["symbol"].to_list() == ["AAPL", "MSFT", "IBM"]
    assert got["qty"].to_list() == [1, 2, 3]


@pytest.mark.parametrize(
    ("row", "error", "message"),
    [
        (("AAPL", "1.0", 1, T0), lp.SchemaError, r"column 'price': expected DOUBLE, got '1\.0'"),
        (("AAPL", 1.0, 1.5, T0), lp.SchemaError, "column 'qty': expected BIGINT"),
        (("AAPL", 1.0, 1, "2024-01-01"), lp.SchemaError, "column 'ts': expected TIMESTAMP"),
        (("AAPL", 1.0, 1), lp.SchemaError, "row has 3 values, expected 4"),
        (("AAPL", 1.0, 1, T0, 5), lp.SchemaError, "row has 5 values, expected 4"),
        ({"symbol": "A", "ts": T0, "venue": "X"}, lp.SchemaError,
         r"unknown column\(s\) \['venue'\]"),
        ((None, 1.0, 1, T0), lp.SchemaError, "column 'symbol' is NOT NULL"),
        (("AAPL", 1.0, 2**63, T0), lp.SchemaError, "out of range for BIGINT"),
        (42, lp.SchemaError, "has no field 'symbol'"),
    ],
)
def test_bad_row_is_refused_and_nothing_is_lost(db, row, error, message):
    def bad(src):
        with pytest.raises(error, match=message):
            src.push(row)
        with pytest.raises(error, match=message):
            src.try_push(row)
    _good_then(db, bad)


def test_schema_error_is_a_type_error():
    assert issubclass(lp.SchemaError, TypeError)
    assert issubclass(lp.ConfigError, ValueError)
    assert issubclass(lp.Timeout, TimeoutError)


def test_push_batch_is_all_or_nothing(db):
    def bad(src):
        rows = [("X", 1.0, 1, T0), ("Y", 1.0, "two", T0), ("Z", 1.0, 3, T0)]
        with pytest.raises(lp.SchemaError, match="row 1: column 'qty'"):
            src.push_batch(rows)
    _good_then(db, bad)


@pytest.mark.parametrize(
    ("batch", "message"),
    [
        (pa.table({"symbol": ["X"], "price": [1.0], "qty": [1]}), r"missing \['ts'\]"),
        (pa.table({"symbol": ["X"], "price": [1.0], "qty": [1], "ts": [T0], "extra": [1]}),
         r"unknown \['extra'\]"),
        (pa.table({"symbol": ["X"], "price": ["1.0"], "qty": [1], "ts": [T0]}),
         "column 'price' is string"),
        (pa.table({"symbol": [None], "price": [1.0], "qty": [1], "ts": [T0]},
                  schema=pa.schema({"symbol": pa.string(), "price": pa.float64(),
                                    "qty": pa.int64(), "ts": pa.timestamp("us")})),
         "'symbol' is NOT NULL"),
        (pa.table({"symbol": ["X"], "price": [1.0], "qty": [2**40], "ts": [T0]})
         .cast(pa.schema({"symbol": pa.string(), "price": pa.float64(), "qty": pa.uint64(),
                          "ts": pa.timestamp("us")})), None),
        ([1, 2, 3], "__arrow_c_array__"),
    ],
)
def test_bad_arrow_batch_is_refused(db, batch, message):
    def bad(src):
        if message is None:  # a compatible cast is accepted: must not raise
            return
        with pytest.raises(lp.SchemaError, match=message):
            src.push_arrow(batch)
    if message is None:
        db.execute(TRADES_DDL)
        sub = db.sink("trades").subscribe()
        db.source("trades").push_arrow(batch)
        db.stop()
        assert read_all(sub)["qty"].to_list() == [2**40]
        return
    _good_then(db, bad)


def test_arrow_cast_that_overflows_is_refused(db):
    db.execute("CREATE SOURCE s (x SMALLINT)")
    with pytest.raises(lp.SchemaError, match="does not fit SMALLINT"):
        db.source("s").push_arrow(pa.table({"x": [1, 100_000]}))
    assert db.source("s").pending == 0


def test_push_to_dropped_source_raises_closed(db):
    db.execute(TRADES_DDL)
    src = db.source("trades")
    db.execute("DROP SOURCE trades")
    with pytest.raises(lp.Closed):
        src.push(GOOD[0])
    with pytest.raises(lp.CatalogError, match="unknown source 'trades'"):
        db.source("trades")


def test_push_after_stop_raises_closed(db):
    db.execute(TRADES_DDL)
    src = db.source("trades")
    db.stop()
    for push in (lambda: src.push(GOOD[0]), lambda: src.push_batch(GOOD),
                 lambda: src.push_arrow(pl.DataFrame([GOOD[0]], orient="row",
                                                     schema=src.definition.polars_schema))):
        with pytest.raises(lp.Closed):
            push()
    with pytest.raises(lp.Closed):
        db.execute("CREATE SOURCE again (x BIGINT)")


@pytest.mark.parametrize("size", [0, 1, 3, 1000, 65535])
def test_non_power_of_two_buffer_size(size):
    with pytest.raises(lp.ConfigError, match="power of two"):
        lp.open(lp.Config(buffer_size=size))
    db = lp.open()
    if size == 0:  # a source's buffer_size 0 means "the database's default"
        db.execute("CREATE SOURCE s (x BIGINT) WITH (buffer_size = 0)")
        assert db.source("s").capacity == 65536
        db.execute("DROP SOURCE s")
    else:
        with pytest.raises(lp.ConfigError, match="power of two"):
            db.execute(f"CREATE SOURCE s (x BIGINT) WITH (buffer_size = {size})")
    assert db.execute("SHOW SOURCES").height == 0
    db.stop()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (lp.Config(checkpoint_interval="10s"), "data_dir is required"),
        (lp.Config(data_dir="x", wal_mode="sync"), "wal_mode requires checkpoint_interval"),
        (lp.Config(wal_mode="fsync"), "unknown value 'fsync'"),
        (lp.Config(checkpoint_interval="ten seconds", data_dir="x"), "cannot read"),
        (lp.Config(workers=0), "workers"),
    ],
)
def test_config_validation(config, message):
    with pytest.raises(lp.ConfigError, match=message):
        lp.open(config)


def test_source_config_validation():
    with pytest.raises(lp.ConfigError, match="backpressure: unknown value 'drop'"):
        lp.SourceConfig(backpressure="drop").validate()
    with pytest.raises(lp.ConfigError, match="wait_strategy"):
        lp.SourceConfig(wait_strategy="sleep").validate()
    cfg = lp.SourceConfig(wait_strategy="spin_yield(7)", backpressure="DROP_OLDEST").validate()
    assert cfg.wait_strategy == lp.WaitStrategy.spin_yield(7)
    assert cfg.backpressure is lp.Backpressure.DROP_OLDEST


@pytest.mark.parametrize(
    ("sql", "error"),
    [
        ("CREATE SOURCE (x BIGINT)", lp.SqlError),
        ("CREATE SOURCE t (x BIGINT", lp.SqlError),
        ("CREATE SOURCE t (x WIDGET)", lp.SchemaError),
        ("CREATE SINK s FROM nowhere", lp.CatalogError),
        ("DROP SOURCE nowhere", lp.CatalogError),
        ("DESCRIBE nowhere", lp.CatalogError),
    ],
)
def test_bad_sql_leaves_catalog_and_rows_alone(db, sql, error):
    def bad(src):
        with pytest.raises(error):
            db.execute(sql)
    _good_then(db, bad)
    assert db.execute("SHOW SINKS")["name"].to_list() == ["trades"]


def test_duplicate_names_are_catalog_errors(db):
    db.execute(TRADES_DDL + "; CREATE SINK s FROM trades")
    with pytest.raises(lp.CatalogError, match="source 'trades' already exists"):
        db.execute(TRADES_DDL)
    with pytest.raises(lp.CatalogError, match="sink 's' already exists"):
        db.execute("CREATE SINK s FROM trades")
    with pytest.raises(lp.CatalogError, match="still read by"):
        db.execute("DROP SOURCE trades")


def test_sql_error_has_line_and_column(db):
    with pytest.raises(lp.SqlError) as info:
        db.execute("CREATE SOURCE t (\n  x BIGINT,\n  y BIGINT NOT NOT NULL\n)")
    assert info.value.line == 3
    assert info.value.column is not None
