"""Registered tables: register, replace, query, list, describe and drop them; a name
clash with a source or view never touches the other object."""

from __future__ import annotations

import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import laminar_polars as lp

RATES = pl.DataFrame({"ccy": ["EUR", "GBP"], "rate": [1.1, 1.3]})


def _tables(db: lp.LaminarDB) -> list[str]:
    return db.execute("SHOW TABLES")["name"].to_list()


def test_register_query_and_drop(db):
    db.register_table("rates", RATES)
    assert _tables(db) == ["rates"]
    assert db.query("SELECT rate FROM rates WHERE ccy = 'GBP'")["rate"].to_list() == [1.3]
    db.execute("DROP TABLE rates")
    assert _tables(db) == []
    with pytest.raises(lp.CatalogError, match="relation 'rates' was not found"):
        db.query("SELECT * FROM rates")
    db.register_table("rates", RATES)  # the name is free again
    db.drop_table("rates")
    assert _tables(db) == []


def test_drop_unknown_table(db):
    with pytest.raises(lp.CatalogError, match=r"unknown table 'nope' \(known: none\)"):
        db.execute("DROP TABLE nope")
    with pytest.raises(lp.CatalogError, match="unknown table 'nope'"):
        db.drop_table("nope")
    db.execute("DROP TABLE IF EXISTS nope")  # nothing to do, no error


def test_register_twice_needs_replace(db):
    db.register_table("rates", RATES)
    with pytest.raises(lp.CatalogError,
                       match=r"table 'rates' already exists; replace=True replaces it"):
        db.register_table("rates", RATES.head(1))
    assert db.query("SELECT count(*) AS n FROM rates")["n"].to_list() == [2]
    db.register_table("rates", pl.DataFrame({"ccy": ["JPY"], "rate": [0.007]}), replace=True)
    assert db.query("SELECT ccy FROM rates")["ccy"].to_list() == ["JPY"]
    db.register_table("fresh", RATES, replace=True)  # replace=True also registers a new one
    assert _tables(db) == ["fresh", "rates"]


@pytest.mark.parametrize(
    "frame",
    [
        pa.table({"ccy": ["EUR", "GBP"], "rate": [1.1, 1.3]}),
        pd.DataFrame({"ccy": ["EUR", "GBP"], "rate": [1.1, 1.3]}),
        pa.table({"ccy": ["EUR", "GBP"], "rate": [1.1, 1.3]}).to_reader(),
    ],
    ids=["pyarrow", "pandas", "stream-reader"],
)
def test_arrow_stream_objects_are_converted_at_registration(db, frame):
    db.register_table("rates", frame)
    got = db.query("SELECT ccy, rate FROM rates ORDER BY ccy")
    assert got.equals(RATES)


def test_the_registered_frame_is_a_snapshot(db):
    frame = RATES.clone()
    db.register_table("rates", frame)
    frame[0, "rate"] = 99.0  # changing the caller's frame later changes nothing
    assert db.query("SELECT rate FROM rates")["rate"].to_list() == [1.1, 1.3]


@pytest.mark.parametrize(
    ("frame", "type_name"),
    [({"ccy": ["EUR"], "rate": [1.1]}, "dict"), ([1, 2], "list"),
     (RATES.lazy(), "LazyFrame"), (None, "NoneType")],
)
def test_anything_else_is_refused_at_registration(db, frame, type_name):
    with pytest.raises(lp.SchemaError) as info:
        db.register_table("rates", frame)
    message = str(info.value)
    assert "table 'rates': expected a polars.DataFrame or an object with __arrow_c_stream__" \
        in message
    assert f"got {type_name}" in message
    assert _tables(db) == []


def test_a_name_clash_never_drops_the_other_object(db):
    db.execute("CREATE SOURCE trades (x BIGINT); "
               "CREATE MATERIALIZED VIEW v AS SELECT x FROM trades")
    for name, kind in (("trades", "source"), ("v", "materialized view")):
        with pytest.raises(lp.CatalogError, match=f"{kind} '{name}' already exists$"):
            db.register_table(name, RATES)
        with pytest.raises(lp.CatalogError,
                           match=f"{kind} '{name}' already exists; replace=True replaces "
                                 "only a table"):
            db.register_table(name, RATES, replace=True)
        with pytest.raises(lp.CatalogError,
                           match=f"'{name}' is a {kind}, not a table; "
                                 f"DROP {kind.upper()} drops it"):
            db.execute(f"DROP TABLE {name}")
        with pytest.raises(lp.CatalogError, match="not a table"):
            db.drop_table(name)
        db.execute(f"DROP TABLE IF EXISTS {name}")  # no table of that name: nothing to do
    assert db.execute("SHOW SOURCES")["name"].to_list() == ["trades"]
    assert db.execute("SHOW MATERIALIZED VIEWS")["name"].to_list() == ["v"]
    assert _tables(db) == []


def test_a_table_name_is_taken_for_sources_and_views(db):
    db.register_table("rates", RATES)
    with pytest.raises(lp.CatalogError, match="table 'rates' already exists"):
        db.execute("CREATE SOURCE rates (x BIGINT)")
