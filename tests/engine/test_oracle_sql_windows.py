"""SQL window aggregates (tumble, hop, session) against a Polars batch oracle.

Every shape is fed the same rows in order, shuffled within the watermark delay,
and with late rows mixed in, through single pushes, push_batch and push_arrow
chunks; after ``db.stop()`` the sink must hold exactly the batch answer on the
rows that were not late (EMIT ON WINDOW CLOSE: one row per key and window).
"""

from __future__ import annotations

import polars as pl
import pytest
from oracle import (
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    at,
    drive,
    frame,
    gen_trades,
    hop,
    interval,
    scenario,
    sessions,
    split_late,
    sql_agg,
    stable_seed,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

DELAY_US = 100 * MS

# name -> (SQL aggregate text, oracle aggregate)
ALL_AGGS = {
    "n": ("count(*)", sql_agg("count_star")),
    "n_price": ("count(price)", sql_agg("count", "price")),
    "volume": ("sum(qty)", sql_agg("sum", "qty")),
    "turnover": ("sum(price)", sql_agg("sum", "price")),
    "low": ("min(price)", sql_agg("min", "price")),
    "high": ("max(price)", sql_agg("max", "price")),
    "min_qty": ("min(qty)", sql_agg("min", "qty")),
    "avg_price": ("avg(price)", sql_agg("avg", "price")),
    "avg_qty": ("avg(qty)", sql_agg("avg", "qty")),
    "open": ("first_value(price)", sql_agg("first_value", "price")),
    "close": ("last_value(price)", sql_agg("last_value", "price")),
    "first_qty": ("first_value(qty)", sql_agg("first_value", "qty")),
    "last_qty": ("last_value(qty)", sql_agg("last_value", "qty")),
    "n_qty": ("count(DISTINCT qty)", sql_agg("count_distinct", "qty")),
}


def agg_sql(aggs: dict = ALL_AGGS) -> str:
    return ",\n       ".join(f"{text} AS {name}" for name, (text, _) in aggs.items())


def oracle_aggs(aggs: dict = ALL_AGGS) -> dict[str, pl.Expr]:
    return {name: expr for name, (_, expr) in aggs.items()}


def run(db: lp.LaminarDB, view_sql: str, kind: str, mode: str, seed: int, *,
        n: int = 400, null_frac: float = 0.1, steps_ms=(0, 0, 1, 7, 40, 100, 250),
        symbols=("AAPL", "MSFT", "GOOG")):
    """Create the view, feed the scenario, return (emitted rows, oracle input frame)."""
    db.execute(trades_ddl(DELAY_US // MS))
    db.execute(view_sql)
    rows = gen_trades(n, seed, null_frac=null_frac, steps_ms=steps_ms, symbols=symbols)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, late = split_late(events, DELAY_US)
    if kind == "late":
        assert late, "the late scenario must produce late rows"
    else:
        assert not late
    got = drive(db, events, mode, seed, ["v"], rounds=1 + seed % 4, settle_view="v",
                delay_us=DELAY_US)["v"]
    return got, frame(kept)


# -- tumble -------------------------------------------------------------------------------

TUMBLES = [
    pytest.param(1 * SECOND, 0.1, id="1s"),
    pytest.param(100 * MS, 0.6, id="100ms-mostly-null"),  # all-null groups: sum is NULL
]


@pytest.mark.parametrize("size_us,null_frac", TUMBLES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_tumble_all_aggregates(db, kind, mode, size_us, null_frac):
    seed = stable_seed((kind, mode, size_us))
    w = interval(size_us)
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol,
       tumble(ts, {w}) AS window_start,
       tumble_end(ts, {w}) AS window_end,
       {agg_sql()}
FROM trades
GROUP BY symbol, tumble(ts, {w})
EMIT ON WINDOW CLOSE""", kind, mode, seed, null_frac=null_frac)
    expected = window_agg(tumble(rows, size_us), ["symbol"], oracle_aggs())
    if null_frac > 0.5:
        assert expected["volume"].null_count() > 0  # the case this parameter is for
    assert_same(got, expected, check_dtypes=False)
    assert got.schema["window_start"] == pl.Datetime("us")
    assert got.schema["window_end"] == pl.Datetime("us")
    for name in ("turnover", "low", "high", "avg_price", "avg_qty", "open", "close"):
        assert got.schema[name] == pl.Float64, name
    for name in ("volume", "min_qty", "first_qty", "last_qty"):
        assert got.schema[name].is_integer(), name


def test_tumble_default_emit_is_on_window_close(db):
    """No EMIT clause on a windowed aggregate: one final row per key and window."""
    got, rows = run(db, """
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, count(*) AS n, sum(qty) AS q
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)""", "shuffled", "mixed", 7)
    expected = window_agg(tumble(rows, SECOND), ["symbol"],
                          {"n": sql_agg("count_star"), "q": sql_agg("sum", "qty")},
                          window_cols=["window_start"])
    assert_same(got, expected, check_dtypes=False)


def test_tumble_without_key(db):
    """GROUP BY only the window: one row per window."""
    got, rows = run(db, """
CREATE MATERIALIZED VIEW v AS
SELECT tumble(ts, INTERVAL '500' MILLISECOND) AS window_start,
       count(*) AS n, max(price) AS high, last_value(qty) AS last_qty
FROM trades GROUP BY tumble(ts, INTERVAL '500' MILLISECOND)
EMIT ON WINDOW CLOSE""", "late", "mixed", 11)
    expected = window_agg(tumble(rows, 500 * MS), [],
                          {"n": sql_agg("count_star"), "high": sql_agg("max", "price"),
                           "last_qty": sql_agg("last_value", "qty")},
                          window_cols=["window_start"])
    assert_same(got, expected, check_dtypes=False)


def test_first_last_value_with_ties_follow_arrival(db):
    """Many rows share a timestamp and arrive out of order: first/last_value
    order by event time, then arrival."""
    got, rows = run(db, """
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start,
       first_value(qty) AS first_qty, last_value(qty) AS last_qty,
       first_value(price) AS open, last_value(price) AS close
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)""",
        "shuffled", "mixed", 3, n=600, steps_ms=(0, 0, 0, 0, 50), null_frac=0.0,
        symbols=("A", "B"))
    aggs = {"first_qty": sql_agg("first_value", "qty"), "last_qty": sql_agg("last_value", "qty"),
            "open": sql_agg("first_value", "price"), "close": sql_agg("last_value", "price")}
    expected = window_agg(tumble(rows, SECOND), ["symbol"], aggs, window_cols=["window_start"])
    # the oracle must differ from pure arrival order, or the test proves nothing
    by_arrival = tumble(rows, SECOND).group_by("symbol", "window_start").agg(
        first_qty=pl.col("qty").first())
    joined = expected.join(by_arrival, on=["symbol", "window_start"], suffix="_arrival")
    assert (joined["first_qty"] != joined["first_qty_arrival"]).any()
    assert_same(got, expected, check_dtypes=False)


# -- hop ----------------------------------------------------------------------------------

HOPS = [
    pytest.param(500 * MS, 2 * SECOND, id="slide500ms-size2s"),
    pytest.param(300 * MS, 1 * SECOND, id="slide300ms-size1s"),  # size not a multiple
]  # a slide longer than the size is refused in SQL (tests/unit/sql/test_window_arguments.py)


@pytest.mark.parametrize("slide_us,size_us", HOPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_hop_all_aggregates(db, kind, mode, slide_us, size_us):
    seed = stable_seed((kind, mode, slide_us, "hop"))
    s, z = interval(slide_us), interval(size_us)
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol,
       hop(ts, {s}, {z}) AS window_start,
       hop_end(ts, {s}, {z}) AS window_end,
       {agg_sql()}
FROM trades
GROUP BY symbol, hop(ts, {s}, {z})
EMIT ON WINDOW CLOSE""", kind, mode, seed, n=300)
    expected = window_agg(hop(rows, slide_us, size_us), ["symbol"], oracle_aggs())
    assert_same(got, expected, check_dtypes=False)
    lengths = (got["window_end"] - got["window_start"]).dt.total_microseconds()
    assert lengths.unique().to_list() == [size_us]


def test_hop_windows_start_before_first_row(db):
    """A row belongs to every hopping window containing it, including windows
    that start before the earliest row (unlike Polars group_by_dynamic)."""
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, hop(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND) AS window_start,
       count(*) AS n
FROM trades GROUP BY symbol, hop(ts, INTERVAL '1' SECOND, INTERVAL '3' SECOND)""")
    rows = [("A", 1.0, 1, at(5_500_000))]
    got = drive(db, rows, "row", 0, ["v"])["v"]
    starts = sorted(got["window_start"].to_list())
    assert starts == [at(3 * SECOND), at(4 * SECOND), at(5 * SECOND)]
    assert got["n"].to_list() == [1, 1, 1]


# -- session ------------------------------------------------------------------------------

SESSION_GAPS = [pytest.param(300 * MS, id="gap300ms"), pytest.param(2 * SECOND, id="gap2s")]


@pytest.mark.parametrize("gap_us", SESSION_GAPS)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_session_all_aggregates(db, kind, mode, gap_us):
    seed = stable_seed((kind, mode, gap_us, "session"))
    g = interval(gap_us)
    got, rows = run(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol,
       session(ts, {g}) AS session_start,
       session_end(ts, {g}) AS session_end,
       {agg_sql()}
FROM trades
GROUP BY symbol, session(ts, {g})
EMIT ON WINDOW CLOSE""", kind, mode, seed, n=300)
    with_ids = sessions(rows, ["symbol"], gap_us)
    grouped = window_agg(with_ids, ["symbol"], {
        "session_start": pl.col("ts").min(),
        "session_end": pl.col("ts").max() + pl.duration(microseconds=gap_us),
        **oracle_aggs()}, window_cols=["__session"])
    expected = grouped.drop("__session")
    assert expected.height > 3  # several sessions per key
    assert_same(got, expected, check_dtypes=False)


def test_session_gap_boundary_exactly_gap_apart_splits(db):
    """ts - previous ts >= gap starts a new session; just under the gap merges,
    also when the bridging row arrives last (out of order, within the delay)."""
    db.execute(trades_ddl(1000))
    db.execute("""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, session(ts, INTERVAL '100' MILLISECOND) AS session_start,
       session_end(ts, INTERVAL '100' MILLISECOND) AS session_end, count(*) AS n,
       first_value(qty) AS first_qty, last_value(qty) AS last_qty
FROM trades GROUP BY symbol, session(ts, INTERVAL '100' MILLISECOND)""")
    rows = [
        ("A", 1.0, 1, at(0)),
        ("A", 1.0, 2, at(100 * MS)),          # exactly gap apart: new session
        ("A", 1.0, 3, at(199_999)),           # just under: same session as 100ms
        ("A", 1.0, 4, at(400 * MS)),          # new session ...
        ("A", 1.0, 5, at(580 * MS)),          # ... bridged by the next row
        ("A", 1.0, 6, at(490 * MS)),          # arrives last, merges 400 and 580
    ]
    got = drive(db, rows, "row", 1, ["v"])["v"].sort("session_start")
    assert got["session_start"].to_list() == [at(0), at(100 * MS), at(400 * MS)]
    assert got["session_end"].to_list() == [at(100 * MS), at(299_999), at(680 * MS)]
    assert got["n"].to_list() == [1, 2, 3]
    assert got["first_qty"].to_list() == [1, 2, 4]
    assert got["last_qty"].to_list() == [1, 3, 5]
