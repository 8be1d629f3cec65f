"""Aggregates with ``FILTER (WHERE ...)`` against Polars SQL in batch.

Continuous (GROUP BY keys), windowed (tumble, hop, session) and global aggregates
are fed rows in order, shuffled within the watermark delay and with late rows
mixed in, through every push method; what they emitted must be what
``pl.SQLContext`` computes with the same FILTERs over the rows that were not
late (the windows computed by the oracle, since Polars SQL has none).
"""

from __future__ import annotations

import polars as pl
import pytest
from oracle import (
    ARRIVAL,
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    drive,
    frame,
    gen_trades,
    hop,
    last_per_key,
    scenario,
    sessions,
    split_late,
    stable_seed,
    trades_ddl,
    tumble,
)

import laminar_polars as lp

DELAY_US = 100 * MS

# Every aggregate that takes FILTER, each with a filter of its own (nulls in
# price and qty make some filters unknown: such rows are left out, as false).
FILTERED = """count(*) FILTER (WHERE qty > 250) AS big_trades,
       count(price) FILTER (WHERE qty % 2 = 0) AS priced_even,
       sum(qty) FILTER (WHERE price < 100) AS cheap_volume,
       sum(price * qty) FILTER (WHERE symbol <> 'GOOG' AND qty IS NOT NULL) AS notional,
       min(price) FILTER (WHERE qty BETWEEN 100 AND 300) AS low,
       max(qty) FILTER (WHERE price > 105) AS high_qty,
       avg(price) FILTER (WHERE upper(symbol) LIKE 'A%') AS avg_apple,
       count(DISTINCT qty % 10) FILTER (WHERE price >= 95) AS digits,
       count(*) AS trades"""


def run(db: lp.LaminarDB, view_sql: str, kind: str, mode: str, seed: int, *,
        n: int = 500) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Create view ``v``, feed the scenario; (what it emitted, the kept rows)."""
    db.execute(trades_ddl(DELAY_US // MS))
    db.execute(view_sql)
    events = scenario(kind, gen_trades(n, seed), DELAY_US, seed)
    kept, late = split_late(events, DELAY_US)
    assert bool(late) == (kind == "late")
    got = drive(db, events, mode, seed, ["v"], rounds=1 + seed % 3, settle_view="v",
                delay_us=DELAY_US)["v"]
    return got, frame(kept).drop(ARRIVAL)


def polars_sql(query: str, rows: pl.DataFrame) -> pl.DataFrame:
    return pl.SQLContext(trades=rows).execute(query, eager=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_continuous_aggregate_with_filters(db, kind, mode):
    query = f"SELECT symbol, {FILTERED} FROM trades GROUP BY symbol"
    got, rows = run(db, f"CREATE MATERIALIZED VIEW v AS {query}", kind, mode,
                    stable_seed(kind, mode, "continuous filter"))
    expected = polars_sql(query, rows)
    assert expected["cheap_volume"].null_count() == 0 and expected["big_trades"].min() > 0
    assert_same(last_per_key(got, ["symbol"]), expected, check_dtypes=False)
    assert_same(db.query("SELECT * FROM v"), expected, check_dtypes=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_tumbling_windows_with_filters(db, kind, mode):
    got, rows = run(db, f"""CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, {FILTERED}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)""", kind, mode,
                    stable_seed(kind, mode, "tumble filter"))
    expected = polars_sql(f"SELECT symbol, window_start, {FILTERED} FROM trades "
                          "GROUP BY symbol, window_start", tumble(rows, SECOND))
    # some windows have no row a filter keeps: their count is 0 and their sum NULL
    assert (expected["big_trades"] == 0).any() and expected["cheap_volume"].null_count() > 0
    assert_same(got, expected, check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_hopping_windows_with_filters(db, kind):
    got, rows = run(db, f"""CREATE MATERIALIZED VIEW v AS
SELECT hop_end(ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND) AS window_end, {FILTERED}
FROM trades GROUP BY hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)""", kind,
                    "mixed", stable_seed(kind, "hop filter"))
    expected = polars_sql(f"SELECT window_end, {FILTERED} FROM trades GROUP BY window_end",
                          hop(rows, 500 * MS, 2 * SECOND))
    assert_same(got, expected, check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_session_windows_with_filters(db, kind):
    got, rows = run(db, f"""CREATE MATERIALIZED VIEW v AS
SELECT symbol, session_end(ts, INTERVAL '300' MILLISECOND) AS session_end, {FILTERED}
FROM trades GROUP BY symbol, session(ts, INTERVAL '300' MILLISECOND)""", kind, "mixed",
                    stable_seed(kind, "session filter"))
    grouped = sessions(rows.with_row_index(ARRIVAL), ["symbol"], 300 * MS)
    expected = polars_sql(
        f"SELECT symbol, max(ts) + INTERVAL '300 milliseconds' AS session_end, {FILTERED} "
        "FROM trades GROUP BY symbol, __session", grouped)
    assert_same(got, expected, check_dtypes=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_global_aggregate_with_filters(db, kind, mode):
    query = f"SELECT {FILTERED} FROM trades"
    got, rows = run(db, f"CREATE MATERIALIZED VIEW v AS {query}", kind, mode,
                    stable_seed(kind, mode, "global filter"))
    expected = polars_sql(query, rows)
    assert_same(got.tail(1), expected, check_dtypes=False)  # each batch: the one row, updated
    assert_same(db.query("SELECT * FROM v"), expected, check_dtypes=False)


def test_filter_is_computed_once_per_distinct_filter_and_argument(db):
    """The same aggregate under the same FILTER is one internal column; under
    another FILTER, or none, another."""
    db.execute(trades_ddl())
    explained = db.execute(
        "EXPLAIN SELECT symbol, sum(qty) FILTER (WHERE price > 1) AS a, "
        "sum(qty) FILTER (WHERE price > 1) + 1 AS b, sum(qty) FILTER (WHERE price > 2) AS c, "
        "sum(qty) AS d FROM trades GROUP BY symbol")["plan"][0]
    assert explained.count("=sum(") == 3
