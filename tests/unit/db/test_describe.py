"""DESCRIBE (db.describe) names the columns of a source, a materialized view or a
registered table, with their types; only a source declares nullability."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import laminar_polars as lp

TRADES = """CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT,
    ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)"""
SCHEMA = {"column": pl.String, "type": pl.String, "nullable": pl.Boolean,
          "watermark_delay": pl.Duration("us")}


def test_describe_a_source(db):
    db.execute(TRADES)
    got = db.execute("DESCRIBE trades")
    assert got.schema == pl.Schema(SCHEMA)
    assert got.rows() == [("symbol", "VARCHAR", False, None), ("price", "DOUBLE", True, None),
                          ("qty", "BIGINT", True, None),
                          ("ts", "TIMESTAMP", False, dt.timedelta(milliseconds=100))]


def test_describe_a_sql_view(db):
    db.execute(TRADES + """;
        CREATE MATERIALIZED VIEW bars AS
        SELECT symbol, tumble(ts, INTERVAL '1' MINUTE) AS window_start, max(price) AS high,
               sum(qty) AS volume, count(*) AS n
        FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)""")
    got = db.execute("DESCRIBE bars")
    assert got.schema == pl.Schema(SCHEMA)
    # a view declares no nullability: null (unknown), not a guess
    assert got.rows() == [("symbol", "VARCHAR", None, None),
                          ("window_start", "TIMESTAMP", None, None),
                          ("high", "DOUBLE", None, None), ("volume", "BIGINT", None, None),
                          ("n", "UInt32", None, None)]  # no SQL name: the Polars type
    assert db.describe("bars").equals(got)


def test_describe_a_lazyframe_view(db):
    db.execute(TRADES)
    db.create_materialized_view("volume", db.stream("trades").group_by("symbol").agg(
        pl.col("qty").sum(), pl.col("price").mean().cast(pl.Float32).alias("avg")))
    got = db.execute("DESCRIBE volume")
    assert got.select("column", "type").rows() == [("symbol", "VARCHAR"), ("qty", "BIGINT"),
                                                   ("avg", "REAL")]
    assert got["nullable"].null_count() == 3


def test_describe_a_table(db):
    db.register_table("fx", pl.DataFrame({
        "ccy": ["EUR"], "rate": [1.1], "day": [dt.date(2024, 1, 2)],
        "tags": [["a", "b"]], "small": pl.Series([1], dtype=pl.UInt8)}))
    got = db.execute("DESCRIBE fx")
    assert got.schema == pl.Schema(SCHEMA)
    assert got.select("column", "type").rows() == [
        ("ccy", "VARCHAR"), ("rate", "DOUBLE"), ("day", "DATE"), ("tags", "List(String)"),
        ("small", "UInt8")]
    assert got["nullable"].null_count() == 5


def test_describe_an_unknown_name(db):
    db.execute(TRADES)
    with pytest.raises(lp.CatalogError,
                       match=r"unknown source, materialized view or table 'nope' "
                             r"\(known: trades\)"):
        db.execute("DESCRIBE nope")
