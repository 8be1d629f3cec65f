"""Scalar SQL in views means what Polars SQL means: one family of functions at a
time, a view in a running database over rows pushed every way (push, push_batch,
push_arrow) holds the rows ``pl.SQLContext`` gives for the same SELECT over the
same rows in batch. Also inside aggregates: a continuous aggregate's key, a
windowed aggregate's arguments, HAVING."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pyarrow as pa
import pytest
from polars.testing import assert_frame_equal

import laminar_polars as lp

SOURCE = """CREATE SOURCE t (sym VARCHAR NOT NULL, name VARCHAR, txt VARCHAR, price DOUBLE,
                             qty BIGINT, flag BOOLEAN, day DATE, ts TIMESTAMP NOT NULL,
                             WATERMARK FOR ts AS ts)"""
SCHEMA = pl.Schema({"sym": pl.String, "name": pl.String, "txt": pl.String,
                    "price": pl.Float64, "qty": pl.Int64, "flag": pl.Boolean, "day": pl.Date,
                    "ts": pl.Datetime("us")})
ARROW = pa.schema({"sym": pa.string(), "name": pa.string(), "txt": pa.string(),
                   "price": pa.float64(), "qty": pa.int64(), "flag": pa.bool_(),
                   "day": pa.date32(), "ts": pa.timestamp("us")})
NAMES = ("alpha_one", "Beta-two", "gamma three", " delta_", "épsilon", "x", "Zeta_zeta_z", None)
TEXTS = ("42", "2024-03-01", "-7", "x", None, "2023-12-31", "3.5")


def _rows(n: int = 90, seed: int = 7) -> list[tuple[object, ...]]:
    """Rows in event-time order over three months, every column null now and then
    (but the key and the time), negative and zero numbers among them."""
    rng = random.Random(seed)
    ts = dt.datetime(2024, 1, 30, 21, 59, 58, 123_456)
    rows = []
    for _ in range(n):
        ts += dt.timedelta(minutes=rng.choice((0, 1, 17, 59, 61, 600, 1500)),
                           microseconds=rng.choice((0, 1, 999_999)))
        price = rng.choice((None, 0.0, -2.5, 99.95, 100.0, 100.5, 250.125))
        qty = rng.choice((None, 0, 1, 7, 99, 250, -3))
        flag = rng.choice((None, True, False))
        day = rng.choice((None, ts.date(), dt.date(2024, 2, 29), dt.date(2023, 12, 31)))
        rows.append((rng.choice("ABC"), rng.choice(NAMES), rng.choice(TEXTS), price, qty, flag,
                     day, ts))
    return rows


ROWS = _rows()
FRAME = pl.DataFrame(ROWS, schema=SCHEMA, orient="row")


def _push_every_way(source: lp.Source, rows: list[tuple[object, ...]]) -> None:
    third = len(rows) // 3
    for row in rows[:third]:
        source.push(row)
    source.push_batch(rows[third:2 * third])
    rest = rows[2 * third:]
    source.push_arrow(pa.table({field.name: [row[i] for row in rest]
                                for i, field in enumerate(ARROW)}, schema=ARROW))


def view_rows(db: lp.LaminarDB, select: str) -> pl.DataFrame:
    """What view ``v`` defined by ``select`` holds after every row was pushed."""
    db.execute(SOURCE)
    db.execute(f"CREATE MATERIALIZED VIEW v AS {select}")
    db.start()
    _push_every_way(db.source("t"), ROWS)
    db.stop()
    return db.query("SELECT * FROM v")


def polars_sql(select: str, frame: pl.DataFrame = FRAME) -> pl.DataFrame:
    return pl.SQLContext(t=frame).execute(select, eager=True)


def assert_same_rows(got: pl.DataFrame, expected: pl.DataFrame, *, check_dtypes: bool = True,
                     ) -> None:
    """The same rows in any order (floats within a relative 1e-9, NaN equal to NaN)."""
    assert got.columns == expected.columns
    if check_dtypes:
        assert got.schema == expected.schema
    order = [c for c, t in expected.schema.items() if not t.is_float()] + [
        c for c, t in expected.schema.items() if t.is_float()]
    assert_frame_equal(got.sort(order, nulls_last=True), expected.sort(order, nulls_last=True),
                       check_dtypes=check_dtypes, check_exact=False, rel_tol=1e-9)


FAMILIES = {
    "strings": """
        upper(name) AS up, lower(name) AS low, length(name) AS len,
        char_length(name) AS chars, octet_length(name) AS bytes, name || '!' AS bang,
        concat(name, '-', qty) AS joined, concat_ws('/', sym, name) AS ws,
        substr(name, 2, 3) AS mid, substring(name FROM 3) AS tail, left(name, 2) AS l2,
        right(name, 3) AS r3, replace(name, '_', ' ') AS spaced,
        split_part(name, '_', 1) AS first_part, split_part(name, '_', 2) AS second_part,
        trim(name) AS trimmed, ltrim(name) AS lt, rtrim(name, '_z') AS rt,
        initcap(name) AS title, reverse(name) AS rev, strpos(name, 'a') AS pos,
        position('e' IN name) AS epos, lpad(sym, 4, '*') AS padded, rpad(sym, 3, '.') AS rp,
        starts_with(name, 'a') AS starts, ends_with(name, 'o') AS ends,
        regexp_like(name, '^[a-m]') AS re, name ~ 'ta' AS tilde, name ~* 'BE' AS itilde,
        regexp_replace(name, '[aeiou]', '#', 'g') AS vowels,
        upper(sym) || ':' || lower(name) AS tag""",
    "math": """
        price + qty AS plus, price * qty AS times, qty / 4 AS quarter, qty % 7 AS rem,
        -qty % 5 AS negrem, mod(qty, 4) AS m4, abs(price - 100) AS dist, ceil(price) AS up,
        floor(price) AS down, round(price, 1) AS r1, round(price) AS r0, trunc(price) AS tr,
        sqrt(abs(price)) AS root, cbrt(qty) AS cube_root, ln(abs(price) + 1) AS natural,
        log10(abs(qty) + 1) AS l10, log2(abs(qty) + 1) AS l2, log(abs(qty) + 1, 3) AS l3,
        exp(price / 100) AS e, power(qty, 2) AS sq, pow(abs(price), 0.5) AS half,
        sign(price - 100) AS sgn, pi() * qty AS circle, greatest(price, qty) AS hi,
        least(price, 50) AS lo, degrees(price) AS deg, radians(qty) AS rad, div(qty, 7) AS d7,
        cos(price) AS c, atan2(price, 2) AS angle, bit_and(qty, 6) AS bits""",
    "date and time": """
        EXTRACT(YEAR FROM ts) AS y, EXTRACT(MONTH FROM ts) AS mo, EXTRACT(DAY FROM ts) AS d,
        EXTRACT(HOUR FROM ts) AS h, EXTRACT(MINUTE FROM ts) AS mi, EXTRACT(SECOND FROM ts) AS s,
        EXTRACT(MILLISECOND FROM ts) AS ms, EXTRACT(MICROSECOND FROM ts) AS us,
        EXTRACT(DOW FROM ts) AS dow, EXTRACT(ISODOW FROM ts) AS isodow,
        EXTRACT(DOY FROM ts) AS doy, EXTRACT(WEEK FROM ts) AS wk, EXTRACT(QUARTER FROM ts) AS q,
        EXTRACT(EPOCH FROM ts) AS epoch, EXTRACT(MONTH FROM day) AS day_month,
        date_part('hour', ts) AS part, date_trunc('hour', ts) AS hour_start,
        date_trunc('month', ts) AS month_start, DATE_TRUNC('week', day) AS week_start,
        date_trunc('quarters', ts) AS quarter_start,
        strftime(ts, '%Y-%m-%d %H:%M') AS stamp, strftime(day, '%d/%m') AS dm,
        ts + INTERVAL '90 minutes' AS later, ts - INTERVAL '1' DAY AS earlier,
        ts + INTERVAL '1' MONTH AS next_month, day + INTERVAL '1 day' AS tomorrow,
        CAST(ts AS DATE) AS date_of, CAST(day AS TIMESTAMP) AS midnight,
        ts - CAST(day AS TIMESTAMP) AS since, ts >= '2024-02-15 12:00:00' AS late_feb,
        day = '2024-02-29' AS leap, ts BETWEEN '2024-02-01' AND '2024-03-01' AS february""",
    "conditional": """
        CASE WHEN price > 100 THEN 'high' WHEN price IS NULL THEN 'none' ELSE 'low' END AS band,
        CASE sym WHEN 'A' THEN 1 WHEN 'B' THEN 2 END AS code,
        CASE WHEN qty < 0 THEN -qty ELSE qty END AS magnitude, COALESCE(price, qty, 0) AS first,
        NULLIF(qty, 0) AS nonzero, IFNULL(price, -1) AS priced, IF(flag, 'y', 'n') AS yn,
        greatest(qty, 5, 2) AS at_least, least(price, qty) AS smaller""",
    "casts": """
        CAST(qty AS VARCHAR) AS qty_text, CAST(price AS BIGINT) AS price_int,
        CAST(price AS INT) AS price_i32, CAST(qty AS DOUBLE) AS qty_f64,
        CAST(qty AS REAL) AS qty_f32, CAST(flag AS INT) AS flag_int, qty::text AS cast_op,
        TRY_CAST(txt AS BIGINT) AS txt_int, TRY_CAST(txt AS DOUBLE) AS txt_f64,
        TRY_CAST(txt AS DATE) AS txt_date, CAST(price AS DECIMAL(10, 2)) AS exact,
        CAST(qty AS SMALLINT) AS small, CAST(qty % 100 AS TINYINT) AS tiny,
        CAST(ts AS VARCHAR) AS ts_text,
        CAST(CAST(qty AS VARCHAR) AS BIGINT) AS round_trip""",
    "comparisons and logic": """
        qty > 100 AS big, price <= 100.5 AS cheap, sym = 'A' AS is_a, sym <> 'B' AS not_b,
        qty IN (1, 7, 99) AS listed, sym NOT IN ('A') AS other, qty BETWEEN 0 AND 99 AS mid,
        qty NOT BETWEEN 0 AND 99 AS outside, name LIKE 'a%' AS like_a,
        name NOT LIKE '%_%' AS no_underscore, name ILIKE '%TA%' AS ilike,
        flag AND qty > 5 AS both, flag OR price > 100 AS either, NOT flag AS negated,
        flag IS TRUE AS truth, flag IS NOT FALSE AS not_false, ts >= '2024-02-15' AS since,
        day <> '2024-02-29' AS not_leap, upper(sym) IN ('A', 'C') AS upper_in,
        '2024-02-01 00:00:00' <= ts AS literal_first,
        ts IN ('2024-02-01', '2024-02-02 10:00:00') AS listed_time""",
    "nulls": """
        price IS NULL AS no_price, name IS NOT NULL AS named,
        qty IS DISTINCT FROM 7 AS not_seven, qty IS NOT DISTINCT FROM NULL AS missing,
        COALESCE(name, '?') AS named_or, NULLIF(sym, 'A') AS not_a, price + NULL AS nothing,
        name || NULL AS null_text, COALESCE(NULLIF(qty, 0), -1) AS zero_as_minus_one""",
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_each_function_family_equals_polars_sql(db, family):
    select = f"SELECT sym, {FAMILIES[family]} FROM t"
    expected = polars_sql(select)
    assert_same_rows(view_rows(db, select), expected)


def test_where_with_functions(db):
    select = ("SELECT sym, name, qty FROM t WHERE upper(sym) IN ('A', 'B') "
              "AND length(trim(name)) > 4 AND EXTRACT(HOUR FROM ts) BETWEEN 6 AND 22 "
              "AND ts < '2024-03-15' AND COALESCE(qty, 0) % 2 = 1")
    expected = polars_sql(select)
    assert 0 < expected.height < FRAME.height
    assert_same_rows(view_rows(db, select), expected)


def test_strict_cast_of_text_to_a_date_parses_it(db):
    select = ("SELECT txt, CAST(txt AS DATE) AS day, CAST(txt AS TIMESTAMP) AS at, "
              "txt::date AS op FROM t WHERE txt LIKE '20%'")
    assert_same_rows(view_rows(db, select), polars_sql(select))


def test_date_trunc_takes_every_unit_polars_sql_takes(db):
    units = ("microsecond", "millisecond", "second", "minute", "hour", "day", "week", "month",
             "quarter", "year", "Hours", "DAYS")
    items = ", ".join(f"date_trunc('{u}', ts) AS t{i}, date_trunc('{u}', day) AS d{i}"
                      for i, u in enumerate(units))
    select = f"SELECT {items} FROM t"
    assert_same_rows(view_rows(db, select), polars_sql(select))


def test_date_trunc_and_try_cast_inside_other_expressions(db):
    """Built by the view (Polars' expression parser cannot: it sees no types),
    then placed inside what Polars SQL builds around them."""
    select = ("SELECT sym, strftime(date_trunc('hour', ts), '%H:%M') AS hour, "
              "date_trunc('day', ts) + INTERVAL '1 day' AS next_day, "
              "EXTRACT(MONTH FROM date_trunc('quarter', day)) AS quarter_month, "
              "TRY_CAST(txt AS DATE) + INTERVAL '1 day' AS after, "
              "COALESCE(TRY_CAST(txt AS TIMESTAMP), date_trunc('year', ts)) AS either "
              "FROM t WHERE date_trunc('minute', ts) > '2024-02-01 00:00:00' "
              "AND date_trunc('hour', date_trunc('day', ts)) IS NOT NULL")
    expected = polars_sql(select)
    assert 0 < expected.height < FRAME.height
    assert expected["after"].null_count() < expected.height
    assert_same_rows(view_rows(db, select), expected)


# -- inside aggregates ------------------------------------------------------------------


def test_function_as_a_continuous_aggregates_key_and_arguments(db):
    select = ("SELECT upper(sym) AS s, count(*) AS n, sum(price * qty) AS notional, "
              "max(length(name)) AS longest, min(EXTRACT(DAY FROM ts)) AS first_day, "
              "round(avg(abs(price)), 2) AS mean FROM t GROUP BY upper(sym) "
              "HAVING abs(sum(qty) - 100) > 10 AND lower(upper(sym)) <> 'c'")
    expected = polars_sql(select)
    assert 0 < expected.height < 3
    assert_same_rows(view_rows(db, select), expected, check_dtypes=False)


def test_date_trunc_as_a_continuous_aggregates_key(db):
    select = ("SELECT date_trunc('month', ts) AS month, count(*) AS n, sum(qty) AS volume "
              "FROM t GROUP BY date_trunc('month', ts)")
    expected = polars_sql(select)
    assert expected.height > 1
    assert_same_rows(view_rows(db, select), expected, check_dtypes=False)


def test_functions_inside_a_windowed_aggregate(db):
    """tumble(ts, 1 hour) is Polars SQL's date_trunc('hour', ts) (both epoch-aligned)."""
    view = ("SELECT sym, tumble(ts, INTERVAL '1' HOUR) AS hour, sum(price * qty) AS notional, "
            "round(avg(price), 2) AS mean, max(upper(name)) AS top, "
            "count(DISTINCT split_part(name, '_', 1)) AS stems, "
            "CASE WHEN sum(qty) > 100 THEN 'busy' ELSE 'quiet' END AS load FROM t "
            "WHERE price IS NOT NULL GROUP BY sym, tumble(ts, INTERVAL '1' HOUR) "
            "HAVING count(*) > 1 OR max(length(name)) > 6")
    batch = ("SELECT sym, hour, sum(price * qty) AS notional, round(avg(price), 2) AS mean, "
             "max(upper(name)) AS top, count(DISTINCT split_part(name, '_', 1)) AS stems, "
             "CASE WHEN sum(qty) > 100 THEN 'busy' ELSE 'quiet' END AS load FROM t "
             "WHERE price IS NOT NULL GROUP BY sym, hour "
             "HAVING count(*) > 1 OR max(length(name)) > 6")
    expected = polars_sql(batch, FRAME.with_columns(hour=pl.col("ts").dt.truncate("1h")))
    assert expected.height > 10
    assert_same_rows(view_rows(db, view), expected, check_dtypes=False)


def test_functions_in_a_global_aggregate(db):
    select = ("SELECT count(*) AS n, sum(abs(qty)) AS total, max(upper(name)) AS top, "
              "min(strftime(ts, '%m-%d')) AS first_day FROM t WHERE name LIKE '%a%'")
    assert_same_rows(view_rows(db, select), polars_sql(select), check_dtypes=False)
