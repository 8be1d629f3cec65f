"""What values a source takes: pandas' and numpy's as well as Python's, one rule
for times pushed as rows and as Arrow, and named errors for what does not fit."""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from conftest import read_all

import laminar_polars as lp

ALL_TYPES = ("CREATE SOURCE v (s VARCHAR, d DOUBLE, r REAL, b BIGINT, i INTEGER, "
             "h SMALLINT, f BOOLEAN, t TIMESTAMP, day DATE)")


def _read(db: lp.LaminarDB, name: str, push) -> pl.DataFrame:
    sub = db.sink(name).subscribe()
    push(db.source(name))
    db.stop()
    return read_all(sub)


# -- missing values -------------------------------------------------------------------

@pytest.mark.parametrize("missing", [pd.NaT, pd.NA, np.datetime64("NaT"),
                                     np.datetime64("NaT", "ns")])
def test_pandas_and_numpy_missing_markers_are_null(db, missing):
    """pandas NaT used to become datetime(1, 1, 1): a missing value is a null."""
    db.execute("CREATE SOURCE q (t TIMESTAMP, day DATE, b BIGINT)")
    got = _read(db, "q", lambda src: (src.push((missing, missing, missing)),
                                      src.push_batch([{"t": missing, "day": None, "b": 1}])))
    assert got.rows() == [(None, None, None), (None, None, 1)]


def test_missing_markers_in_not_null_and_event_time_columns_are_refused(db):
    db.execute("CREATE SOURCE q (t TIMESTAMP NOT NULL, e TIMESTAMP, "
               "WATERMARK FOR e AS e - INTERVAL '1' SECOND)")
    src = db.source("q")
    now = dt.datetime(2024, 1, 1)
    with pytest.raises(lp.SchemaError, match="'t' is NOT NULL, got NaT"):
        src.push((pd.NaT, now))
    with pytest.raises(lp.SchemaError, match=r"'e'.*event time"):
        src.push((now, pd.NaT))
    assert src.pending == 0


def test_a_pandas_frame_with_nat_round_trips_through_rows_and_arrow(db):
    frame = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 09:30", None]), "x": [1.0, 2.0]})
    db.execute("CREATE SOURCE q (t TIMESTAMP, x DOUBLE)")
    got = _read(db, "q", lambda src: (src.push_batch(frame.to_dict("records")),
                                      src.push_arrow(frame)))
    expected = [(dt.datetime(2024, 1, 1, 9, 30), 1.0), (None, 2.0)]
    assert got.rows() == expected * 2


# -- ranges -----------------------------------------------------------------------------

@pytest.mark.parametrize("value", [2**63 - 1, -(2**63), 253402300800000000, -62135596800000001,
                                   dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
                                   np.datetime64(2**62, "us")])
def test_timestamps_outside_what_python_holds_are_refused(db, value):
    """An int TIMESTAMP of 2**63-1 used to be accepted, and later panicked
    Polars in db.query."""
    db.execute("CREATE SOURCE q (t TIMESTAMP)")
    src = db.source("q")
    with pytest.raises(lp.SchemaError, match=r"out of range for TIMESTAMP \(0001-01-01"):
        src.push((value,))
    with pytest.raises(lp.SchemaError, match="out of range"):
        src.push_batch([(0,), (value,)])
    assert src.pending == 0


def test_the_timestamp_range_ends_are_accepted(db):
    db.execute("CREATE SOURCE q (t TIMESTAMP)")
    got = _read(db, "q", lambda src: src.push_batch([(-62135596800000000,),
                                                      (253402300799999999,)]))
    assert got["t"].to_list() == [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59,
                                                                      999999)]


@pytest.mark.parametrize("unit,value", [("s", 253402300800), ("ms", -62135596800001)])
def test_arrow_timestamps_outside_the_range_are_refused(db, unit, value):
    db.execute("CREATE SOURCE q (t TIMESTAMP)")
    src = db.source("q")
    with pytest.raises(lp.SchemaError, match="outside the TIMESTAMP range"):
        src.push_arrow(pa.table({"t": pa.array([0, value], pa.timestamp(unit))}))
    assert src.pending == 0


def test_dates_and_watermarks_outside_the_range_are_refused(db):
    db.execute("CREATE SOURCE q (day DATE, t TIMESTAMP NOT NULL, WATERMARK FOR t AS t)")
    src = db.source("q")
    with pytest.raises(lp.SchemaError, match="out of range for DATE"):
        src.push((3_000_000, 0))
    with pytest.raises(lp.SchemaError, match="outside the DATE range"):
        src.push_arrow(pa.table({"day": pa.array([3_000_000], pa.date32()),
                                 "t": pa.array([0], pa.timestamp("us"))}))
    with pytest.raises(lp.SchemaError, match="out of the TIMESTAMP range"):
        src.watermark(2**63 - 1)


# -- one rule for sub-microsecond times --------------------------------------------------

NANOS = [1_704_101_400_000_001_999, -1_500, 999, -1]  # times in ns, some before 1970


def test_nanosecond_times_floor_to_microseconds_in_rows_and_arrow_alike(db):
    """timestamp[ns] Arrow columns with sub-microsecond values used to be
    refused while a row push truncated them: both floor to microseconds now."""
    db.execute("CREATE SOURCE q (t TIMESTAMP)")

    def push(src: lp.Source) -> None:
        src.push_batch([(pd.Timestamp(n, unit="ns"),) for n in NANOS])
        src.push_batch([(np.datetime64(n, "ns"),) for n in NANOS])
        src.push_arrow(pa.table({"t": pa.array(NANOS, pa.timestamp("ns"))}))
        src.push_arrow(pl.DataFrame({"t": pl.Series(NANOS).cast(pl.Datetime("ns"))}))

    got = _read(db, "q", push)["t"].dt.epoch("us").to_list()
    floored = [n // 1000 for n in NANOS]
    assert got == floored * 4
    assert floored == pl.Series(NANOS).cast(pl.Datetime("ns")).dt.epoch("us").to_list()


# -- numpy scalars ----------------------------------------------------------------------

def test_numpy_scalars_are_taken_wherever_the_python_type_is(db):
    """np.int64 worked for BIGINT only; np.float32, np.bool_ and np.datetime64
    were refused everywhere."""
    db.execute(ALL_TYPES)
    python = ("x", 1.5, 2.5, 3, 4, 5, True, dt.datetime(2024, 1, 2, 3, 4, 5, 6),
              dt.date(2024, 1, 2))
    numpy = (np.str_("x"), np.float32(1.5), np.float64(2.5), np.int64(3), np.int32(4),
             np.int16(5), np.bool_(True), np.datetime64("2024-01-02T03:04:05.000006"),
             np.datetime64("2024-01-02"))
    mixed = ("x", np.int64(1), np.int8(2), np.uint32(3), np.int64(4), np.uint8(5),
             np.bool_(True), np.int64(1704164645000006), np.datetime64("2024-01-02", "D"))
    got = _read(db, "v", lambda src: (src.push(python), src.push(numpy), src.push_batch([mixed]),
                                      src.push(dict(zip(src.definition.names, numpy,
                                                        strict=True)))))
    expected = pl.DataFrame([python], schema=got.schema, orient="row")
    mixed_expected = expected.with_columns(d=pl.lit(1.0), r=pl.lit(2.0, pl.Float32))
    assert got.rows() == expected.rows() * 2 + mixed_expected.rows() + expected.rows()


@pytest.mark.parametrize("column,value", [("b", np.float64(1.0)), ("f", np.int64(1)),
                                          ("day", np.datetime64("2024-01-02T03:04")),
                                          ("s", np.int64(1)), ("t", np.float32(1.0))])
def test_numpy_scalars_of_the_wrong_kind_are_refused_by_name(db, column, value):
    db.execute(ALL_TYPES)
    src = db.source("v")
    with pytest.raises(lp.SchemaError, match=f"column '{column}': expected"):
        src.push({column: value})


# -- record types -------------------------------------------------------------------------

@dataclasses.dataclass
class AnyTrade:
    symbol: typing.Any
    price: typing.Any
    ts: typing.Any


class LooseTrade(typing.NamedTuple):
    symbol: str
    price: np.float32
    ts: typing.Optional[typing.Any]  # noqa: UP045 (the spelling a user may write)


def test_record_types_annotated_any_or_numpy_are_accepted(db):
    """A dataclass whose TIMESTAMP field is annotated typing.Any was refused."""
    db.execute("CREATE SOURCE t (symbol VARCHAR, price DOUBLE, ts TIMESTAMP)")
    when = dt.datetime(2024, 1, 1)
    got = _read(db, "t", lambda src: (db.source("t", AnyTrade).push(AnyTrade("A", 1.0, when)),
                                      db.source("t", LooseTrade).push(LooseTrade("B", np.float32(2),
                                                                                 when))))
    assert got.rows() == [("A", 1.0, when), ("B", 2.0, when)]


def test_record_types_with_wrong_annotations_are_still_refused(db):
    @dataclasses.dataclass
    class Wrong:
        symbol: str
        price: str
        ts: dt.datetime

    db.execute("CREATE SOURCE t (symbol VARCHAR, price DOUBLE, ts TIMESTAMP)")
    with pytest.raises(lp.SchemaError, match=r"Wrong.price is annotated"):
        db.source("t", Wrong)


# -- clear errors -------------------------------------------------------------------------

def test_an_int_too_large_for_double_is_a_schema_error(db):
    """Used to escape as OverflowError: int too large to convert to float."""
    db.execute("CREATE SOURCE q (d DOUBLE)")
    with pytest.raises(lp.SchemaError, match=r"column 'd': 10{400} is too large for DOUBLE"):
        db.source("q").push((10**400,))


def test_a_lone_surrogate_is_a_schema_error(db):
    """Used to escape as UnicodeEncodeError."""
    db.execute("CREATE SOURCE q (s VARCHAR)")
    src = db.source("q")
    for push in (lambda: src.push(("a\ud800b",)), lambda: src.push_batch([("ok",), ("\udfff",)])):
        with pytest.raises(lp.SchemaError, match=r"'s'.*cannot be stored as UTF-8.*surrogate"):
            push()
    assert src.pending == 0


def test_an_out_of_range_bigint_names_the_range(db):
    """The range used to print as (0..-1) for ints beyond 64 bits."""
    db.execute("CREATE SOURCE q (b BIGINT, h SMALLINT)")
    src = db.source("q")
    with pytest.raises(lp.SchemaError,
                       match=r"18446744073709551616 is out of range for BIGINT "
                             r"\(-9223372036854775808\.\.9223372036854775807\)"):
        src.push((2**64, 0))
    with pytest.raises(lp.SchemaError,
                       match=r"70000 is out of range for SMALLINT \(-32768\.\.32767\)"):
        src.push((0, 70000))


def test_a_duplicated_arrow_column_is_a_schema_error(db):
    """Used to escape as pyarrow's KeyError."""
    db.execute("CREATE SOURCE q (a BIGINT, b BIGINT)")
    table = pa.Table.from_arrays([pa.array([1]), pa.array([2]), pa.array([3])],
                                 names=["a", "b", "a"])
    with pytest.raises(lp.SchemaError, match=r"column\(s\) \['a'\] more than once"):
        db.source("q").push_arrow(table)
