"""WHERE, HAVING, CASE, casts and scalar expressions in SQL views.

docs/sql.md: these mean what they mean in Polars SQL, so the oracle for the non-window part is
Polars' own SQLContext run on the rows that were not late (with the window
columns computed by the oracle, since Polars SQL has no tumble / hop).
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
    split_late,
    stable_seed,
    trades_ddl,
    tumble,
)

import laminar_polars as lp

DELAY_US = 100 * MS


def polars_sql(query: str, **tables: pl.DataFrame) -> pl.DataFrame:
    return pl.SQLContext(**tables).execute(query, eager=True)


def run(db: lp.LaminarDB, view_sql: str, kind: str, mode: str, seed: int, *,
        n: int = 500, sinks=("v",), **gen):
    db.execute(trades_ddl(DELAY_US // MS))
    db.execute(view_sql)
    rows = gen_trades(n, seed, **gen)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, _ = split_late(events, DELAY_US)
    out = drive(db, events, mode, seed, list(sinks), rounds=1 + seed % 4, settle_view="v",
                delay_us=DELAY_US)
    return (out["v"] if sinks == ("v",) else out), frame(kept).drop(ARRIVAL)


SELECT_EXPRS = """symbol,
       price * 2 AS p2,
       price + qty AS p_plus_q,
       CAST(qty AS DOUBLE) / 3 AS q_third,
       CAST(price AS BIGINT) AS price_int,
       CAST(qty AS VARCHAR) AS qty_text,
       qty % 7 AS q_mod,
       -qty AS neg_qty,
       CASE WHEN price > 100 THEN 'hi' WHEN price IS NULL THEN 'none' ELSE 'lo' END AS band,
       COALESCE(price, 0.0) AS price0,
       upper(symbol) AS sym,
       ts"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_row_wise_select_where_case_cast(db, kind, mode):
    where = "WHERE (qty IS NULL OR qty % 2 = 0) AND symbol <> 'GOOG'"
    got, rows = run(db, f"CREATE MATERIALIZED VIEW v AS SELECT {SELECT_EXPRS} FROM trades {where}",
                    kind, mode, stable_seed(kind, mode, "rowwise"))
    expected = polars_sql(f"SELECT {SELECT_EXPRS} FROM trades {where}", trades=rows)
    assert expected.height > 50
    assert_same(got, expected)  # dtypes too: as in Polars SQL


def test_integer_division_as_in_polars_sql(db):
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS SELECT symbol, qty / 2 AS half, ts "
                        "FROM trades", "ordered", "batch", 1, n=50)
    expected = polars_sql("SELECT symbol, qty / 2 AS half, ts FROM trades", trades=rows)
    assert_same(got, expected)


def test_select_star_where(db):
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS SELECT * FROM trades "
                        "WHERE price BETWEEN 95 AND 105 AND qty IN (1, 2, 3, 100, 200) "
                        "OR symbol LIKE 'MS%'", "late", "mixed", 2)
    expected = polars_sql("SELECT * FROM trades WHERE price BETWEEN 95 AND 105 AND qty IN "
                          "(1, 2, 3, 100, 200) OR symbol LIKE 'MS%'", trades=rows)
    assert_same(got, expected)


WINDOWED = """
SELECT symbol,
       {win} AS window_start,
       sum(price * qty) AS notional,
       sum(CASE WHEN qty >= 250 THEN 1 ELSE 0 END) AS n_big,
       max(CAST(price AS BIGINT)) AS high_int,
       max(price) - min(price) AS spread,
       count(*) AS n,
       CAST(sum(qty) AS DOUBLE) / count(*) AS avg_qty
FROM trades
WHERE price IS NOT NULL AND qty > 20 AND symbol <> 'GOOG'
GROUP BY symbol, {group}
HAVING count(*) > 1 AND max(price) > 98
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_windowed_where_having_case_cast(db, kind, mode):
    win = "tumble(ts, INTERVAL '1' SECOND)"
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS "
                        + WINDOWED.format(win=win, group=win) + "EMIT ON WINDOW CLOSE",
                    kind, mode, stable_seed(kind, mode, "windowed"), n=800)
    windowed = tumble(rows, SECOND)
    expected = polars_sql(WINDOWED.format(win="window_start", group="window_start"),
                          trades=windowed)
    assert expected.height > 10
    assert_same(got, expected, check_dtypes=False)


def test_hop_where_having(db):
    win = "hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)"
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS "
                        + WINDOWED.format(win=win, group=win), "late", "mixed", 41, n=600)
    expected = polars_sql(WINDOWED.format(win="window_start", group="window_start"),
                          trades=hop(rows, 500 * MS, 2 * SECOND))
    assert_same(got, expected, check_dtypes=False)


def test_expressions_over_aggregates_and_group_key_in_output_order(db):
    """Aggregates inside scalar expressions; window columns after the aggregates."""
    query = """
SELECT count(*) + 1 AS n1,
       CASE WHEN sum(qty) > 1000 THEN 'heavy' ELSE 'light' END AS load,
       CAST(avg(price) AS REAL) AS avg32,
       symbol,
       tumble_end(ts, INTERVAL '1' SECOND) AS window_end
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)"""
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS " + query, "shuffled", "arrow", 43,
                    null_frac=0.0)
    expected = polars_sql("""
SELECT count(*) + 1 AS n1,
       CASE WHEN sum(qty) > 1000 THEN 'heavy' ELSE 'light' END AS load,
       CAST(avg(price) AS REAL) AS avg32,
       symbol, window_end
FROM trades GROUP BY symbol, window_end""", trades=tumble(rows, SECOND))
    assert got.schema["avg32"] == pl.Float32
    assert_same(got, expected, check_dtypes=False, rtol=1e-6)


def test_continuous_where_having_monotone(db):
    """A continuous aggregate with WHERE and a HAVING that, once true, stays true
    (sums of positive quantities): the last upsert per key is the batch answer,
    and keys never passing HAVING are never emitted."""
    query = """
SELECT symbol, sum(qty) AS volume, count(*) AS n, max(price) AS high
FROM trades
WHERE price > 95
GROUP BY symbol
HAVING sum(qty) > 6000"""
    got, rows = run(db, "CREATE MATERIALIZED VIEW v AS " + query, "late", "mixed", 47,
                    n=400, symbols=tuple("ABCDEFGHIJ"))
    expected = polars_sql(query, trades=rows)
    assert 0 < expected.height < 10  # some keys pass, some do not
    assert set(got["symbol"]) == set(expected["symbol"])
    assert_same(last_per_key(got, ["symbol"]), expected, check_dtypes=False)
