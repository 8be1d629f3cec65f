"""Window arguments that cannot mean what was written are refused at registration.

SQL ``hop(ts, slide, size)`` takes the slide first: a slide longer than the size
leaves rows between windows in none, which is almost always swapped arguments,
so SQL refuses it. A LazyFrame ``group_by_dynamic(every=..., period=...)`` with
``every > period`` is legal Polars and stays accepted (the view equals Polars;
see tests/engine/test_oracle_lazy.py). Zero or negative lengths are refused by
both front ends with `PlanError`.
"""

from __future__ import annotations

import polars as pl
import pytest

import laminar_polars as lp

TRADES_DDL = """CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT,
    ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)"""


def _view(db: lp.LaminarDB, window: str) -> None:
    db.execute(f"CREATE MATERIALIZED VIEW v AS SELECT symbol, count(*) AS n FROM trades "
               f"GROUP BY symbol, {window}")


def test_hop_with_slide_longer_than_size_is_refused(db):
    db.execute(TRADES_DDL)
    with pytest.raises(lp.PlanError) as info:
        _view(db, "hop(ts, INTERVAL '1' MINUTE, INTERVAL '10' SECOND)")
    message = str(info.value)
    assert "hop(ts, slide, size)" in message
    assert "slide INTERVAL '1 MINUTE' is longer than the size INTERVAL '10 SECOND'" in message
    assert "hop(ts, INTERVAL '10 SECOND', INTERVAL '1 MINUTE')" in message  # the swap
    assert db.execute("SHOW MATERIALIZED VIEWS").height == 0


def test_hop_end_in_the_select_list_is_checked_too(db):
    db.execute(TRADES_DDL)
    with pytest.raises(lp.PlanError, match="longer than the size"):
        db.execute("CREATE MATERIALIZED VIEW v AS SELECT "
                   "hop_end(ts, INTERVAL '1' MINUTE, INTERVAL '10' SECOND) AS e, count(*) AS n "
                   "FROM trades GROUP BY hop(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)")


def test_hop_with_slide_equal_to_size_is_a_tumble(db):
    db.execute(TRADES_DDL)
    _view(db, "hop(ts, INTERVAL '10' SECOND, INTERVAL '10' SECOND)")
    assert db.execute("SHOW MATERIALIZED VIEWS")["name"].to_list() == ["v"]


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ("tumble(ts, INTERVAL '0' SECOND)", "size must be positive, got INTERVAL '0 SECOND'"),
        ("tumble(ts, INTERVAL '-1' SECOND)", "size must be positive, got INTERVAL '-1 SECOND'"),
        ("tumble(ts, -INTERVAL '1' SECOND)", "size must be positive, got -INTERVAL '1 SECOND'"),
        ("hop(ts, INTERVAL '0' SECOND, INTERVAL '10' SECOND)",
         "slide must be positive, got INTERVAL '0 SECOND'"),
        ("hop(ts, INTERVAL '-5' SECOND, INTERVAL '10' SECOND)",
         "slide must be positive, got INTERVAL '-5 SECOND'"),
        ("hop(ts, INTERVAL '1' SECOND, INTERVAL '0' SECOND)",
         "size must be positive, got INTERVAL '0 SECOND'"),
        ("session(ts, INTERVAL '0' SECOND)", "gap must be positive, got INTERVAL '0 SECOND'"),
        ("session(ts, INTERVAL '-5' SECOND)", "gap must be positive, got INTERVAL '-5 SECOND'"),
    ],
)
def test_zero_or_negative_window_lengths_are_plan_errors(db, window, message):
    db.execute(TRADES_DDL)
    with pytest.raises(lp.PlanError, match=message):
        _view(db, window)


@pytest.mark.parametrize(
    ("every", "period", "message"),
    [
        ("0s", None, "every must be positive, got 0s"),
        ("-1s", None, "every must be positive, got -1s"),
        ("1s", "0s", "period must be positive, got 0s"),
        ("1s", "-2s", "period must be positive, got -2s"),
    ],
)
def test_lazyframe_zero_or_negative_every_or_period(db, every, period, message):
    db.execute(TRADES_DDL)
    frame = db.stream("trades").group_by_dynamic(
        "ts", every=every, period=period, group_by="symbol").agg(pl.len())
    with pytest.raises(lp.PlanError, match=message):
        db.create_materialized_view("v", frame)


def test_lazyframe_every_longer_than_period_stays_accepted(db):
    db.execute(TRADES_DDL)
    frame = db.stream("trades").group_by_dynamic(
        "ts", every="1m", period="10s", group_by="symbol").agg(pl.len())
    db.create_materialized_view("v", frame)
    assert db.execute("SHOW MATERIALIZED VIEWS")["name"].to_list() == ["v"]
