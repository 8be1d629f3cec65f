"""What a view refuses in its scalar SQL, and what each refusal says: a function
Polars SQL does not know, one that is not a function of the row, one that reads
other rows, and the few places Polars' expression parser cannot reach."""

from __future__ import annotations

import polars as pl
import pytest

from laminar_polars.errors import PlanError
from laminar_polars.plan import Node, Scan
from laminar_polars.sql import parse_statements, plan_select

TRADES = Scan("trades", pl.Schema({"symbol": pl.String, "price": pl.Float64, "qty": pl.Int64,
                                   "note": pl.String, "ts": pl.Datetime("us")}), "ts")


def plan(select: str) -> Node:
    [statement] = parse_statements(f"CREATE MATERIALIZED VIEW v AS {select}")
    return plan_select(statement.query, {"trades": TRADES}.__getitem__,  # type: ignore[union-attr]
                       statement.emit)  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("select", "message"),
    [
        # functions Polars SQL does not know: named, with where the list is
        ("SELECT md5(symbol) FROM trades",
         r"^MD5\(symbol\): unsupported function 'md5' \(a view's functions are those of "
         r"Polars SQL: see docs/sql.md\)$"),
        ("SELECT symbol FROM trades WHERE levenshtein(symbol, 'A') < 2",
         "unsupported function 'levenshtein'"),
        # Polars' own reason for a wrong argument
        ("SELECT round(price, qty) FROM trades", r"^ROUND\(price, qty\): invalid value for ROUND"),
        ("SELECT symbol FROM trades WHERE symbol LIKE note", "pattern must be a string literal"),
        # not a function of the row: a restart, or Polars in batch, would compute other rows
        ("SELECT now() AS at, price FROM trades", r"^CURRENT_TIMESTAMP is not allowed in a view: "
         r"its value is not a function of the row.*use the event-time column$"),
        ("SELECT price FROM trades WHERE ts > current_timestamp - INTERVAL '1' HOUR",
         r"CURRENT_TIMESTAMP is not allowed in a view"),
        ("SELECT current_date AS today FROM trades", "CURRENT_DATE is not allowed in a view"),
        ("SELECT random() * price FROM trades", r"RANDOM\(\) is not allowed in a view"),
        ("SELECT symbol, count(*) FROM trades GROUP BY symbol HAVING max(ts) < now()",
         "CURRENT_TIMESTAMP is not allowed in a view"),
        # aggregates where nothing aggregates, and functions of other rows
        ("SELECT price FROM trades WHERE median(price) > 1",
         r"aggregate function median\(\) is not allowed in WHERE"),
        ("SELECT price - quantile_cont(price, 0.5) FROM trades GROUP BY price",
         "aggregate function quantile_cont is not supported; supported: count, sum"),
        ("SELECT count(*) FILTER (WHERE qty > 1) FROM trades WHERE count(*) > 1",
         r"aggregate function count\(\) is not allowed in WHERE"),
        ("SELECT symbol FROM trades GROUP BY symbol "
         "HAVING sum(count(*) FILTER (WHERE qty > 1)) > 1",
         r"aggregate function count\(\) is not allowed in an aggregate's argument"),
        ("SELECT row_number() OVER (ORDER BY ts) FROM trades", "window functions with OVER"),
        ("SELECT unnest(string_to_array(note, ',')) FROM trades",
         r"explode\(\) is not allowed in a view: it reads other rows than the current one, or "
         r"makes more"),
        # FILTER where its rows could not be told from null values
        ("SELECT symbol, first_value(price) FILTER (WHERE qty > 1) FROM trades GROUP BY symbol",
         r"first_value\(...\) FILTER \(WHERE ...\) is not supported: first and last values "
         "take nulls too"),
        ("SELECT symbol, sum(qty) FILTER (WHERE qty) FROM trades GROUP BY symbol",
         "FILTER needs a boolean condition, got Int64"),
        ("SELECT date_trunc('fortnight', ts) FROM trades",
         "date_trunc does not know the unit 'FORTNIGHT'; it takes 'microsecond'"),
        ("SELECT date_trunc('hour', price) FROM trades",
         "date_trunc needs a TIMESTAMP or DATE, got Float64"),
        ("SELECT price FROM trades WHERE ts > 'yesterday'", "cannot read 'yesterday' as a "
         "TIMESTAMP"),
    ],
)
def test_refused_with_the_construct_named(select, message):
    with pytest.raises(PlanError, match=message):
        plan(select)


@pytest.mark.parametrize("select", [
    "SELECT date_trunc('hour', ts) AS hour FROM trades",
    "SELECT max(date_trunc('hour', ts)) AS last FROM trades",
    "SELECT date_trunc('day', ts) AS day, count(*) AS n FROM trades GROUP BY date_trunc('day', ts)",
    "SELECT strftime(date_trunc('hour', ts), '%H') AS h, count(*) AS n FROM trades "
    "GROUP BY date_trunc('hour', ts)",  # the key's column, not date_trunc, inside strftime
    "SELECT date_trunc('hour', date_trunc('day', ts)) AS d FROM trades",
    "SELECT TRY_CAST(note AS TIMESTAMP) AS at FROM trades",
    "SELECT strftime(date_trunc('hour', ts), '%H') AS h FROM trades",
    "SELECT TRY_CAST(note AS DATE) + INTERVAL '1' DAY AS d FROM trades",
])
def test_date_trunc_and_try_cast_where_the_view_builds_them(select):
    plan(select)
