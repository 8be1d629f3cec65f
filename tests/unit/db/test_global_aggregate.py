"""An aggregate without GROUP BY holds one row from the start, as Polars SQL (and
RisingWave) answer over no rows: count 0, sum and the like NULL. Subscribers are
sent rows that changed, so the first row they get is the first batch's."""

from __future__ import annotations

import datetime as dt

import polars as pl
from conftest import read_all
from polars.testing import assert_frame_equal

import laminar_polars as lp

T0 = dt.datetime(2024, 1, 2, 9, 30)
SOURCE = "CREATE SOURCE s (k VARCHAR, v BIGINT, ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts)"
SCHEMA = pl.Schema({"k": pl.String, "v": pl.Int64, "ts": pl.Datetime("us")})
EVERY_AGGREGATE = ("SELECT count(*) AS n, count(v) AS n_v, sum(v) AS total, avg(v) AS mean, "
                   "min(v) AS low, max(k) AS high, count(DISTINCT k) AS keys, "
                   "first_value(v) AS first, last_value(k) AS last, "
                   "count(*) FILTER (WHERE v > 0) AS positive, "
                   "sum(v) FILTER (WHERE k = 'a') AS a_total, count(*) + 1 AS n1 FROM s")


def polars_over_no_rows(select: str) -> pl.DataFrame:
    batch = select.replace("first_value", "first").replace("last_value", "last")
    return pl.SQLContext(s=pl.DataFrame(schema=SCHEMA)).execute(batch, eager=True)


def test_one_row_from_the_start_as_polars_sql_over_no_rows(db):
    db.execute(f"{SOURCE}; CREATE MATERIALIZED VIEW g AS {EVERY_AGGREGATE}")
    expected = polars_over_no_rows(EVERY_AGGREGATE)
    assert expected.row(0) == (0, 0, None, None, None, None, 0, None, None, 0, None, 1)
    assert_frame_equal(db.query("SELECT * FROM g"), expected, check_dtypes=False)  # not started
    db.start()
    assert_frame_equal(db.query("SELECT * FROM g"), expected, check_dtypes=False)
    db.source("s").push_batch([("a", 3, T0), ("b", -1, T0)])
    db.stop()
    assert db.query("SELECT n, total, keys, positive, a_total FROM g").row(0) == (2, 2, 2, 1, 3)


def test_having_decides_whether_the_row_is_there(db):
    db.execute(f"""{SOURCE};
        CREATE MATERIALIZED VIEW busy AS SELECT count(*) AS n FROM s HAVING count(*) > 0;
        CREATE MATERIALIZED VIEW quiet AS SELECT count(*) AS n FROM s HAVING count(*) = 0""")
    db.start()
    assert db.query("SELECT * FROM busy").height == 0
    assert db.query("SELECT * FROM quiet").rows() == [(0,)]
    db.source("s").push(("a", 1, T0))
    db.stop()
    assert db.query("SELECT * FROM busy").rows() == [(1,)]
    assert db.query("SELECT * FROM quiet").height == 0


def test_a_view_over_it_sees_the_row(db):
    db.execute(f"""{SOURCE}; CREATE MATERIALIZED VIEW g AS SELECT count(*) AS n FROM s;
                   CREATE MATERIALIZED VIEW twice AS SELECT n * 2 AS n2 FROM g""")
    db.start()
    assert db.query("SELECT * FROM twice").rows() == [(0,)]


def test_subscribers_get_changed_rows_only(db):
    """The row that no input changed is not sent; the first batch's row is the
    key's insert in a changelog, later ones its updates."""
    db.execute(f"{SOURCE}; CREATE MATERIALIZED VIEW g AS SELECT count(*) AS n, sum(v) AS total "
               "FROM s")
    changes = db.create_sink("changes", "g", changelog=True).subscribe()
    db.start()
    source = db.source("s")
    source.push(("a", 5, T0))
    db.stop()
    assert read_all(changes).rows() == [(1, 5, "insert")]


def test_windowed_and_keyed_aggregates_have_no_row_before_input(db):
    db.execute(f"""{SOURCE};
        CREATE MATERIALIZED VIEW per_key AS SELECT k, count(*) AS n FROM s GROUP BY k;
        CREATE MATERIALIZED VIEW per_minute AS SELECT count(*) AS n FROM s
        GROUP BY tumble(ts, INTERVAL '1' MINUTE) EMIT ON UPDATE""")
    db.start()
    assert db.query("SELECT * FROM per_key").height == 0
    assert db.query("SELECT * FROM per_minute").height == 0


def test_the_row_survives_a_restart_before_any_input(tmp_path):
    config = lp.Config(data_dir=str(tmp_path), checkpoint_interval="1h")
    with lp.open(config) as db:
        db.execute(f"{SOURCE}; CREATE MATERIALIZED VIEW g AS SELECT count(*) AS n FROM s")
        db.start()
        db.checkpoint()
    with lp.open(config) as db:
        db.execute(f"{SOURCE}; CREATE MATERIALIZED VIEW g AS SELECT count(*) AS n FROM s")
        db.start()
        assert db.query("SELECT * FROM g").rows() == [(0,)]
        db.source("s").push(("a", 1, T0))
    with lp.open(config) as db:
        db.execute(f"{SOURCE}; CREATE MATERIALIZED VIEW g AS SELECT count(*) AS n FROM s")
        db.start()
        assert db.query("SELECT * FROM g").rows() == [(1,)]
