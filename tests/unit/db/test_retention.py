"""Views keep a bounded history for ``db.query`` (docs/semantics.md, Retention): the newest rows,
or the rows within an event-time span behind the view's watermark; by default
``Config.view_retention`` (1 M rows). Continuous aggregates are not trimmed."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

import laminar_polars as lp

SECOND = 1_000_000
TRADES = ("CREATE SOURCE trades (k VARCHAR NOT NULL, v BIGINT, ts TIMESTAMP NOT NULL, "
          "WATERMARK FOR ts AS ts)")


def _push(db: lp.LaminarDB, n: int, step_us: int = SECOND) -> None:
    db.source("trades").push_batch([("ab"[i % 2], i, i * step_us) for i in range(n)])


def test_the_default_keeps_a_million_rows():
    assert lp.Config().view_retention == 1_000_000
    assert lp.Config().retention == lp.config.Retention(rows=1_000_000)


@pytest.mark.parametrize("value", [0, -5, 1.5, "soon", True, "0 seconds"])
def test_a_bad_retention_is_refused(value):
    with pytest.raises(lp.ConfigError, match="view_retention"):
        lp.open(lp.Config(view_retention=value))


def test_a_row_wise_view_keeps_its_newest_rows():
    """A row-wise view used to keep every row it ever emitted."""
    with lp.open(lp.Config(view_retention=100)) as db:
        db.execute(TRADES)
        db.execute("CREATE MATERIALIZED VIEW evens AS SELECT k, v, ts FROM trades "
                   "WHERE v % 2 = 0")
        db.start()
        _push(db, 1000)
    got = db.query("SELECT v FROM evens ORDER BY v")["v"].to_list()
    assert got == list(range(800, 1000, 2))
    assert db.metrics()["views"]["evens"]["retained_rows"] == 100


@pytest.mark.parametrize("how", ["sql", "lazyframe"])
def test_a_window_view_keeps_the_windows_within_a_time_span(how):
    """Retention by event time: windows whose time column is within the span
    behind the view's watermark (here the window end, the view's event time)."""
    db = lp.open()
    db.execute(TRADES)
    if how == "sql":
        db.execute("CREATE MATERIALIZED VIEW bars WITH (retention = '10 seconds') AS "
                   "SELECT k, tumble(ts, INTERVAL '1' SECOND) AS ws, "
                   "tumble_end(ts, INTERVAL '1' SECOND) AS we, count(*) AS n FROM trades "
                   "GROUP BY k, tumble(ts, INTERVAL '1' SECOND)")
    else:
        bars = (db.stream("trades").group_by_dynamic("ts", every="1s", group_by="k",
                                                      label="right")
                .agg(pl.len().alias("n")).rename({"ts": "we"}))
        db.create_materialized_view("bars", bars, retention=dt.timedelta(seconds=10))
    db.start()
    _push(db, 60)
    src = db.source("trades")
    src.watermark(59 * SECOND)  # closes every window up to 59 s
    deadline = dt.datetime(1970, 1, 1, 0, 0, 59)
    for _ in range(3000):  # the engine takes the watermark in its own time
        if db.metrics()["views"]["bars"]["watermark"] >= deadline:
            break
        time.sleep(0.01)
    got = db.query("SELECT we FROM bars ORDER BY we")["we"]
    db.stop()
    assert got.min() >= deadline - dt.timedelta(seconds=10)
    assert got.max() <= deadline
    assert got.len() == 11  # windows ending 49..59 s (the span's start included), one key each


def test_sql_retention_in_rows_and_everything():
    db = lp.open(lp.Config(view_retention=5))
    db.execute(TRADES)
    db.execute("CREATE MATERIALIZED VIEW few WITH (retention = 3) AS SELECT v FROM trades;"
               "CREATE MATERIALIZED VIEW dflt AS SELECT v FROM trades")
    db.create_materialized_view("all", db.stream("trades").select("v"), retention=None)
    db.start()
    _push(db, 20)
    db.stop()
    assert db.query("SELECT v FROM few")["v"].to_list() == [17, 18, 19]
    assert db.query("SELECT count(*) AS n FROM dflt")["n"].item() == 5
    assert db.query("SELECT count(*) AS n FROM all")["n"].item() == 20
    assert db.catalog.views["few"].retention == lp.config.Retention(rows=3)


def test_continuous_aggregates_are_not_trimmed():
    with lp.open(lp.Config(view_retention=2)) as db:
        db.execute(TRADES)
        db.execute("CREATE MATERIALIZED VIEW per_v AS SELECT v, count(*) AS n FROM trades "
                   "GROUP BY v")
        db.start()
        _push(db, 50)
    assert db.query("SELECT count(*) AS n FROM per_v")["n"].item() == 50


def test_update_windows_keep_their_closed_windows_within_retention():
    with lp.open() as db:
        db.execute(TRADES)
        db.execute("CREATE MATERIALIZED VIEW live WITH (retention = 4) AS "
                   "SELECT k, tumble(ts, INTERVAL '1' SECOND) AS ws, count(*) AS n FROM trades "
                   "GROUP BY k, tumble(ts, INTERVAL '1' SECOND) EMIT ON UPDATE")
        db.start()
        _push(db, 30)
    # closed windows: the newest 4 kept; after stop() every window is closed
    assert db.query("SELECT count(*) AS n FROM live")["n"].item() == 4
    assert db.metrics()["views"]["live"]["retained_rows"] == 4


def test_sql_retention_options_are_checked():
    db = lp.open()
    db.execute(TRADES)
    with pytest.raises(lp.ConfigError, match="unknown WITH option 'history'"):
        db.execute("CREATE MATERIALIZED VIEW v WITH (history = 3) AS SELECT v FROM trades")
    with pytest.raises(lp.ConfigError, match="at least 1"):
        db.execute("CREATE MATERIALIZED VIEW v WITH (retention = 0) AS SELECT v FROM trades")
    with pytest.raises(lp.PlanError, match="retention by event time needs an event-time"):
        db.execute("CREATE MATERIALIZED VIEW v WITH (retention = '1 hour') AS "
                   "SELECT v FROM trades")
