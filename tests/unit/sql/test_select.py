"""SELECT → logical plan: shapes, scalar expressions (checked by computing them),
aggregates (checked by plan structure and a small batch evaluator), and refusals."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sqlglot import exp

from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    WindowSpec,
    apply_steps,
)
from laminar_polars.sql import explain_select, parse_statements, plan_select

SCHEMA = pl.Schema({"symbol": pl.String, "price": pl.Float64, "qty": pl.Int64,
                    "ts": pl.Datetime("us")})
TRADES = Scan("trades", SCHEMA, "ts")
NO_TIME = Scan("static", pl.Schema({"k": pl.String, "v": pl.Int64}), None)
UPSERTS = Scan("totals", pl.Schema({"symbol": pl.String, "volume": pl.Int64}), None,
               appends_only=False)
RELATIONS = {scan.name: scan for scan in (TRADES, NO_TIME, UPSERTS)}

T0 = dt.datetime(2024, 1, 1)
ROWS = pl.DataFrame(
    {
        "symbol": ["A", "B", "A", "A", "B", "A"],
        "price": [10.0, 20.0, 12.0, None, 19.0, 11.0],
        "qty": [1, 2, 3, 4, None, 6],
        "ts": [T0 + dt.timedelta(seconds=s) for s in (0, 10, 30, 59, 61, 75)],
    },
    schema=SCHEMA,
)

OHLC = """
CREATE MATERIALIZED VIEW ohlc_1min AS
SELECT symbol,
       tumble(ts, INTERVAL '1' MINUTE)     AS window_start,
       tumble_end(ts, INTERVAL '1' MINUTE) AS window_end,
       first_value(price) AS open, max(price) AS high,
       min(price) AS low, last_value(price) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)
EMIT ON WINDOW CLOSE
"""


def relation(name: str) -> Scan:
    if name not in RELATIONS:
        raise CatalogError(f"unknown source or view {name!r}")
    return RELATIONS[name]


def plan(sql: str, emit: str | None = None) -> Node:
    [statement] = parse_statements(sql if "CREATE" in sql else f"{sql}")
    if hasattr(statement, "emit"):
        emit = emit or statement.emit
    return plan_select(statement.query, relation, emit)  # type: ignore[union-attr]


def evaluate(node: Node, frame: pl.DataFrame = ROWS) -> pl.DataFrame:
    """A plan computed in batch over the whole input, for checking the translation."""
    if isinstance(node, Scan):
        return frame
    source = evaluate(node.input, frame)
    if isinstance(node, RowMap):
        return apply_steps(source.lazy(), node.steps).collect()
    groups = list(node.keys)
    if isinstance(node, WindowAgg):
        assert node.window.kind == "tumble", "the test evaluator only knows tumbling windows"
        size = node.window.size_us
        micros = source[node.input_time_column].dt.epoch("us")
        start = (micros // size * size).cast(pl.Datetime("us"))
        source = source.with_columns(start.alias(WINDOW_START),
                                     (start + pl.duration(microseconds=size)).alias(WINDOW_END))
        groups += [WINDOW_START, WINDOW_END]
    time = node.input.time_column
    aggs = [_reduce(agg.func, agg.expr, time).alias(agg.name) for agg in node.aggs]
    if groups:
        internal = source.group_by(groups, maintain_order=True).agg(aggs)
    else:
        internal = source.select(aggs)
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(node.output)


def _reduce(func: str, e: pl.Expr | None, time: str | None) -> pl.Expr:
    if func == "count_star":
        return pl.len()
    assert e is not None
    ordered = e.sort_by(time) if time else e
    return {
        "count": e.count(), "sum": pl.when(e.count() > 0).then(e.sum()),
        "min": e.min(), "max": e.max(), "mean": e.mean(),
        "first": ordered.first(), "last": ordered.last(), "n_unique": e.drop_nulls().n_unique(),
    }[func]


def rows(sql: str, frame: pl.DataFrame = ROWS) -> list[dict[str, object]]:
    return evaluate(plan(sql), frame).to_dicts()


def column(sql: str, frame: pl.DataFrame = ROWS) -> list[object]:
    result = evaluate(plan(sql), frame)
    assert result.width == 1
    return result.to_series().to_list()


# -- row-wise queries ----------------------------------------------------------------

def test_filter_and_select_make_one_rowmap():
    node = plan("SELECT symbol, price * qty AS notional FROM trades WHERE qty > 2")
    assert isinstance(node, RowMap) and node.input is TRADES
    assert [s.kind for s in node.steps] == ["filter", "select"]
    assert node.schema == pl.Schema({"symbol": pl.String, "notional": pl.Float64})
    assert evaluate(node).to_dicts() == [
        {"symbol": "A", "notional": 36.0}, {"symbol": "A", "notional": None},
        {"symbol": "A", "notional": 66.0},
    ]
    assert node.time_column is None


def test_select_star_keeps_columns_and_event_time():
    node = plan("SELECT * FROM trades WHERE symbol = 'B'")
    assert node.schema == SCHEMA and node.time_column == "ts"
    assert_frame_equal(evaluate(node), ROWS.filter(pl.col("symbol") == "B"))
    assert plan("SELECT t.* FROM trades AS t").schema == SCHEMA


def test_renamed_time_column_stays_the_event_time():
    assert plan("SELECT ts AS event_time, price FROM trades").time_column == "event_time"


def test_rowmap_ignores_emit():
    assert isinstance(plan("SELECT price FROM trades", emit="on_window_close"), RowMap)


def test_qualified_columns_use_the_alias_or_the_table_name():
    assert column("SELECT t.qty FROM trades t WHERE t.symbol = 'B'") == [2, None]
    assert column("SELECT trades.qty FROM trades WHERE qty = 1") == [1]
    with pytest.raises(CatalogError, match="unknown table 'x'"):
        plan("SELECT x.qty FROM trades t")
    with pytest.raises(CatalogError, match="unknown table 'trades'"):
        plan("SELECT trades.qty FROM trades t")  # an alias hides the name, as in PostgreSQL


def test_unquoted_names_match_case_insensitively():
    assert column("SELECT QTY FROM trades WHERE Symbol = 'B'") == [2, None]
    with pytest.raises(CatalogError):
        plan('SELECT "QTY" FROM trades')


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT nope FROM trades",
        "SELECT price FROM trades WHERE nope > 1",
        "SELECT sum(nope) FROM trades",
        "SELECT count(*) FROM trades GROUP BY nope",
        "SELECT symbol FROM trades GROUP BY symbol HAVING max(nope) > 1",
    ],
)
def test_unknown_column_names_it_and_the_known_ones(sql):
    with pytest.raises(CatalogError, match=r"unknown column 'nope'; known columns: symbol, "
                                           r"price, qty, ts"):
        plan(sql)


def test_unknown_relation_propagates_catalog_error():
    with pytest.raises(CatalogError, match="unknown source or view 'nowhere'"):
        plan("SELECT * FROM nowhere")


# -- scalar expressions, computed ------------------------------------------------------------

NUMS = pl.DataFrame({"a": [7, -7, 7, None], "b": [2, 2, 0, 1], "f": [2.5, -1.25, 0.5, None],
                     "s": ["Abc", "a_c", "x.y%z", None], "flag": [True, False, None, True]})
RELATIONS["nums"] = Scan("nums", NUMS.schema, None)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("a + b", [9, -5, 7, None]),
        ("a - b * 2", [3, -11, 7, None]),
        ("a / b", [3.5, -3.5, float("inf"), None]),  # true division, as Polars SQL
        ("a % b", [1, -1, None, None]),  # SQL remainder: the dividend's sign
        ("f % 1", [0.5, -0.25, 0.5, None]),
        ("-a", [-7, 7, -7, None]),
        ("(a + 1) * 2", [16, -12, 16, None]),
        ("a > b", [True, False, True, None]),
        ("a <> 7", [False, True, False, None]),
        ("a != 7", [False, True, False, None]),
        ("a >= 7 AND flag", [True, False, None, None]),
        ("a < 0 OR flag", [True, True, None, True]),
        ("NOT flag", [False, True, None, False]),
        ("a IS NULL", [False, False, False, True]),
        ("a IS NOT NULL", [True, True, True, False]),
        ("flag IS TRUE", [True, False, False, True]),
        ("flag IS FALSE", [False, True, False, False]),
        ("a IS DISTINCT FROM 7", [False, True, False, True]),
        ("a IS NOT DISTINCT FROM NULL", [False, False, False, True]),
        ("a IN (7, 8)", [True, False, True, None]),
        ("a NOT IN (7, 8)", [False, True, False, None]),
        ("s IN ('Abc', 'zz')", [True, False, False, None]),
        ("a IN (b, -7)", [False, True, False, None]),
        ("a BETWEEN 0 AND 7", [True, False, True, None]),
        ("a NOT BETWEEN 0 AND 7", [False, True, False, None]),
        ("s LIKE 'A%'", [True, False, False, None]),
        ("s LIKE '%c'", [True, True, False, None]),
        ("s LIKE '%.y%'", [False, False, True, None]),
        ("s LIKE 'a_c'", [False, True, False, None]),
        ("s LIKE 'x.y%%'", [False, False, True, None]),
        ("s LIKE 'Abc'", [True, False, False, None]),
        ("s LIKE 'x_y%'", [False, False, True, None]),
        ("s LIKE 'xy%'", [False, False, False, None]),
        ("s NOT LIKE 'A%'", [False, True, True, None]),
        ("s ILIKE 'a%'", [True, True, False, None]),
        ("CASE WHEN a > 0 THEN 'pos' WHEN a < 0 THEN 'neg' ELSE 'none' END",
         ["pos", "neg", "pos", "none"]),
        ("CASE b WHEN 2 THEN 'two' WHEN 0 THEN 'zero' END", ["two", "two", "zero", None]),
        ("CAST(a AS DOUBLE) / 2", [3.5, -3.5, 3.5, None]),
        ("f::int", [2, -1, 0, None]),
        ("a::varchar || '!'", ["7!", "-7!", "7!", None]),
        ("TRY_CAST(s AS BIGINT)", [None, None, None, None]),
        ("COALESCE(a, b, 0)", [7, -7, 7, 1]),
        ("ABS(a)", [7, 7, 7, None]),
        ("ROUND(f)", [2.0, -1.0, 0.0, None]),
        ("ROUND(f * 3, 1)", [7.5, -3.8, 1.5, None]),
        ("UPPER(s)", ["ABC", "A_C", "X.Y%Z", None]),
        ("LOWER(s)", ["abc", "a_c", "x.y%z", None]),
        ("LENGTH(s)", [3, 3, 5, None]),
        ("CHAR_LENGTH(s)", [3, 3, 5, None]),
        ("FLOOR(f)", [2.0, -2.0, 0.0, None]),
        ("CEIL(f)", [3.0, -1.0, 1.0, None]),
        ("IF(a > 0, 'p', 'n')", ["p", "n", "p", "n"]),
        ("TRUE", [True] * 4),
        ("NULL", [None] * 4),
        ("1.5", [1.5] * 4),
        ("-2", [-2] * 4),
        ("'text'", ["text"] * 4),
    ],
)
def test_scalar_expression(expression, expected):
    result = column(f"SELECT {expression} AS out FROM nums", NUMS)
    assert result == expected


def test_division_is_float_and_remainder_keeps_the_integer_type():
    node = plan("SELECT a / b AS q, a % b AS r FROM nums")
    assert node.schema == pl.Schema({"q": pl.Float64, "r": pl.Int64})


def test_timestamps_literals_and_interval_arithmetic():
    sql = ("SELECT ts + INTERVAL '1' SECOND AS later, ts - INTERVAL '500ms' AS earlier FROM trades "
           "WHERE ts >= TIMESTAMP '2024-01-01 00:00:30' AND ts < '2024-01-01 00:01:01'")
    result = evaluate(plan(sql))
    assert result["later"].to_list() == [T0 + dt.timedelta(seconds=31),
                                         T0 + dt.timedelta(seconds=60)]
    assert result["earlier"].to_list() == [T0 + dt.timedelta(seconds=29.5),
                                           T0 + dt.timedelta(seconds=58.5)]
    assert result.schema["later"] == pl.Datetime("us")
    between = ("SELECT qty FROM trades "
               "WHERE ts BETWEEN '2024-01-01 00:00:10' AND '2024-01-01 00:00:30'")
    assert column(between) == [2, 3]
    assert column("SELECT qty FROM trades WHERE ts IN ('2024-01-01 00:00:10')") == [2]
    assert column("SELECT CAST('2024-01-01' AS DATE) AS d FROM trades WHERE qty = 1") == [T0.date()]
    text = pl.DataFrame({"t": ["2024-01-01 00:00:05"], "d": ["2024-01-01"]})
    RELATIONS["texts"] = Scan("texts", text.schema, None)
    assert column("SELECT CAST(t AS TIMESTAMP) AS x FROM texts", text) == [
        T0 + dt.timedelta(seconds=5)]
    assert column("SELECT d::date AS x FROM texts", text) == [T0.date()]
    assert column("SELECT TRY_CAST(t AS DATE) AS x FROM texts", text) == [None]


def test_unnamed_outputs_get_simple_unique_names():
    node = plan("SELECT qty, qty, price * 2, upper(symbol), CAST(qty AS DOUBLE), "
                "CASE WHEN qty > 1 THEN 1 END, 1 AS qty_1, ts FROM trades")
    assert list(node.schema) == ["qty", "qty_2", "_col3", "upper", "qty_3", "case", "qty_1",
                                 "ts"]


def test_aggregate_default_names():
    node = plan("SELECT count(*), count(qty), sum(qty), avg(price), max(price), max(qty), "
                "first_value(price), last_value(price), count(DISTINCT symbol) FROM trades")
    assert list(node.schema) == ["count", "count_1", "sum", "avg", "max", "max_1",
                                 "first_value", "last_value", "count_2"]


# -- windowed aggregates -----------------------------------------------------------------------

def test_spec_ohlc_view():
    node = plan(OHLC)
    assert isinstance(node, WindowAgg)
    assert node.input is TRADES
    assert node.keys == ("symbol",)
    assert node.window == WindowSpec("tumble", 60_000_000, 60_000_000, 0, "epoch")
    assert [(a.name, a.func, str(a.expr) if a.expr is not None else None) for a in node.aggs] == [
        ("__agg0", "first", 'col("price")'), ("__agg1", "max", 'col("price")'),
        ("__agg2", "min", 'col("price")'), ("__agg3", "last", 'col("price")'),
        ("__agg4", "sum", 'col("qty")'), ("__agg5", "count_star", None),
    ]
    assert all(a.order == "event" and a.null_sum == "null" for a in node.aggs)
    assert node.emit == "on_window_close" and node.having is None
    assert (node.time_output, node.time_output_is) == ("window_end", "end")
    assert node.time_column == "window_end" and node.time_lag_us == 0
    assert node.schema == pl.Schema({
        "symbol": pl.String, "window_start": pl.Datetime("us"), "window_end": pl.Datetime("us"),
        "open": pl.Float64, "high": pl.Float64, "low": pl.Float64, "close": pl.Float64,
        "volume": pl.Int64, "trades": pl.UInt32,
    })
    minute = dt.timedelta(minutes=1)
    assert evaluate(node).to_dicts() == [
        {"symbol": "A", "window_start": T0, "window_end": T0 + minute, "open": 10.0,
         "high": 12.0, "low": 10.0, "close": None, "volume": 8, "trades": 3},
        {"symbol": "B", "window_start": T0, "window_end": T0 + minute, "open": 20.0,
         "high": 20.0, "low": 20.0, "close": 20.0, "volume": 2, "trades": 1},
        {"symbol": "B", "window_start": T0 + minute, "window_end": T0 + 2 * minute,
         "open": 19.0, "high": 19.0, "low": 19.0, "close": 19.0, "volume": None, "trades": 1},
        {"symbol": "A", "window_start": T0 + minute, "window_end": T0 + 2 * minute,
         "open": 11.0, "high": 11.0, "low": 11.0, "close": 11.0, "volume": 6, "trades": 1},
    ]


def test_explain_select():
    [statement] = parse_statements(OHLC)
    text = explain_select(statement.query, relation)
    lines = text.splitlines()
    assert lines[0].startswith("WindowAgg tumble(size=60000000us) keys=['symbol'] aggs=[__agg0=")
    assert "emit=on_window_close" in lines[0]
    assert lines[1].startswith("  Scan trades [symbol: String")
    rowwise = explain_select(parse_statements("SELECT price FROM trades WHERE qty > 1")[0].query,
                             relation)
    assert rowwise.startswith('RowMap filter([(col("qty")) > (dyn int: 1)]); select(')


@pytest.mark.parametrize(
    ("interval", "micros"),
    [
        ("INTERVAL '1' MINUTE", 60_000_000),
        ("INTERVAL '100' MILLISECOND", 100_000),
        ("INTERVAL '10' SECOND", 10_000_000),
        ("INTERVAL '1 minute'", 60_000_000),
        ("INTERVAL '10 seconds'", 10_000_000),
        ("INTERVAL '500ms'", 500_000),
        ("INTERVAL 2 HOUR", 7_200_000_000),
        ("INTERVAL '1' DAY", 86_400_000_000),
        ("INTERVAL '250' MICROSECOND", 250),
        ("'30s'", 30_000_000),
    ],
)
def test_interval_units(interval, micros):
    node = plan(f"SELECT count(*) FROM trades GROUP BY tumble(ts, {interval})")
    assert node.window.size_us == micros


def plan_session(sql: str) -> Node:
    """``session`` is a sqlglot keyword, so ``session(...)`` does not parse yet: the test
    spells it ``sess`` and renames the calls in the tree."""
    query = parse_statements(sql)[0].query
    for call in query.find_all(exp.Anonymous):
        call.set("this", call.name.replace("sess", "session"))
    return plan_select(query, relation, None)


def test_session_call_parses():
    node = plan("SELECT count(*) FROM trades GROUP BY session(ts, INTERVAL '30' SECOND)")
    assert node.window == WindowSpec("session", 30_000_000)


def test_hop_session_and_offset_windows():
    hop = plan("SELECT symbol, hop_end(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE) AS e, "
               "count(*) AS n FROM trades "
               "GROUP BY symbol, hop(ts, INTERVAL '10' SECOND, INTERVAL '1' MINUTE)")
    assert hop.window == WindowSpec("hop", 60_000_000, 10_000_000)
    assert hop.time_output == "e"
    session = plan_session("SELECT sess(ts, INTERVAL '30' SECOND) AS s, "
                           "sess_end(ts, INTERVAL '30' SECOND) AS e, sum(qty) AS q FROM trades "
                           "GROUP BY sess(ts, INTERVAL '30' SECOND)")
    assert session.window == WindowSpec("session", 30_000_000)
    assert session.keys == () and (session.time_output, session.time_output_is) == ("e", "end")
    offset = plan("SELECT count(*) FROM trades GROUP BY "
                  "tumble(ts, INTERVAL '1' HOUR, INTERVAL '15' MINUTE)")
    assert offset.window == WindowSpec("tumble", 3_600_000_000, offset_us=900_000_000)


def test_time_output_is_the_start_without_an_end_column():
    node = plan("SELECT tumble(ts, INTERVAL '1' MINUTE) AS ws, symbol, count(*) FROM trades "
                "GROUP BY tumble(ts, INTERVAL '1' MINUTE), symbol")
    assert (node.time_output, node.time_output_is) == ("ws", "start")
    assert node.time_column == "ws" and node.time_lag_us == 60_000_000
    node = plan("SELECT symbol, count(*) AS n FROM trades "
                "GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)")
    assert node.time_output is None and node.time_column is None
    unnamed = plan("SELECT tumble_end(ts, INTERVAL '1' MINUTE), count(*) FROM trades "
                   "GROUP BY tumble(ts, INTERVAL '1' MINUTE)")
    assert unnamed.time_output == "tumble_end"


def test_emit_on_update_is_honoured():
    node = plan(OHLC.replace("EMIT ON WINDOW CLOSE", "EMIT ON UPDATE"))
    assert node.emit == "on_update" and not node.appends_only and node.time_column is None
    assert plan(OHLC.replace("EMIT ON WINDOW CLOSE", "")).emit == "on_window_close"


def test_window_after_where_and_with_qualified_time_column():
    node = plan("SELECT count(*) AS n FROM trades t WHERE t.price > 10 "
                "GROUP BY tumble(t.ts, INTERVAL '1' MINUTE)")
    assert isinstance(node.input, RowMap) and node.input.steps[0].kind == "filter"
    assert node.input_time_column == "ts"
    assert column("SELECT count(*) AS n FROM trades WHERE price > 10 "
                  "GROUP BY tumble(ts, INTERVAL '1' MINUTE)") == [2, 2]


def test_having_on_windows_and_window_columns():
    node = plan("SELECT symbol, tumble(ts, INTERVAL '1' MINUTE) AS ws FROM trades "
                "GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE) "
                "HAVING count(*) > 1 AND tumble(ts, INTERVAL '1' MINUTE) >= '2024-01-01'")
    assert [a.func for a in node.aggs] == ["count_star"]
    assert evaluate(node).to_dicts() == [{"symbol": "A", "ws": T0}]


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT tumble_end(ts, INTERVAL '2' MINUTE) FROM trades "
         "GROUP BY tumble(ts, INTERVAL '1' MINUTE)", "does not match the GROUP BY window"),
        ("SELECT hop_end(ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE) FROM trades "
         "GROUP BY tumble(ts, INTERVAL '1' MINUTE)", "does not match the GROUP BY window"),
        ("SELECT tumble(ts, INTERVAL '1' MINUTE), count(*) FROM trades GROUP BY symbol",
         r"needs GROUP BY tumble\(...\)"),
        ("SELECT tumble(ts, INTERVAL '1' MINUTE) FROM trades",
         r"only allowed in a query grouped by the same window"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts, INTERVAL '1' MINUTE), "
         "hop(ts, INTERVAL '1' MINUTE, INTERVAL '2' MINUTE)", "at most one window"),
        ("SELECT count(*) FROM trades GROUP BY tumble_end(ts, INTERVAL '1' MINUTE)",
         "window's start function"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts)", r"expected tumble\(ts, size"),
        ("SELECT count(*) FROM trades GROUP BY hop(ts, INTERVAL '1' MINUTE)",
         r"expected hop\(ts, slide, size"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts + INTERVAL '1' SECOND, "
         "INTERVAL '1' MINUTE)", "expected tumble"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts, 5)", "expected an INTERVAL"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts, INTERVAL '1' MONTH)",
         "months and years"),
        ("SELECT count(*) FROM trades GROUP BY tumble(ts, INTERVAL '0' SECOND)",
         "must be positive"),
        ("SELECT count(*) FROM trades GROUP BY tumble(price, INTERVAL '1' MINUTE)",
         "must use the event-time column 'ts' of 'trades', not 'price'"),
        ("SELECT count(*) FROM static GROUP BY tumble(k, INTERVAL '1' MINUTE)",
         "'static' has none"),
        ("SELECT count(*) FROM (SELECT price, qty FROM trades) GROUP BY "
         "tumble(price, INTERVAL '1' MINUTE)", "the subquery in FROM has none"),
    ],
)
def test_window_errors(sql, message):
    with pytest.raises(PlanError, match=message):
        plan(sql)


# -- continuous aggregates ---------------------------------------------------------------------

def test_keyed_aggregate():
    node = plan("SELECT symbol, count(*) AS n, count(price) AS priced, sum(qty) AS volume, "
                "avg(price) AS mean_price, count(DISTINCT qty) AS sizes FROM trades "
                "GROUP BY symbol")
    assert isinstance(node, KeyedAgg) and node.keys == ("symbol",)
    assert [a.func for a in node.aggs] == ["count_star", "count", "sum", "mean", "n_unique"]
    assert node.aggs[-1].count_null is False
    assert node.schema == pl.Schema({"symbol": pl.String, "n": pl.UInt32, "priced": pl.UInt32,
                                     "volume": pl.Int64, "mean_price": pl.Float64,
                                     "sizes": pl.UInt32})
    assert not node.appends_only and node.time_column is None
    assert evaluate(node).to_dicts() == [
        {"symbol": "A", "n": 4, "priced": 3, "volume": 14, "mean_price": 11.0, "sizes": 4},
        {"symbol": "B", "n": 2, "priced": 2, "volume": 2, "mean_price": 19.5, "sizes": 1},
    ]


def test_aggregates_without_group_by_have_no_keys():
    node = plan("SELECT count(*) AS n, max(price) AS top FROM trades WHERE symbol = 'A'")
    assert isinstance(node, KeyedAgg) and node.keys == ()
    assert evaluate(node).to_dicts() == [{"n": 4, "top": 12.0}]


def test_emit_on_window_close_needs_a_window():
    with pytest.raises(PlanError, match="EMIT ON WINDOW CLOSE needs a window"):
        plan("CREATE MATERIALIZED VIEW v AS SELECT symbol, count(*) FROM trades "
             "GROUP BY symbol EMIT ON WINDOW CLOSE")
    assert isinstance(plan("SELECT count(*) FROM trades", emit="on_update"), KeyedAgg)
    with pytest.raises(PlanError, match="unknown emit mode"):
        plan("SELECT count(*) FROM trades", emit="sometimes")


def test_aggregate_arguments_are_expressions_and_identical_aggregates_are_shared():
    node = plan("SELECT symbol, sum(price * qty) AS notional, max(price) - min(price) AS spread, "
                "max(t.price) AS high, sum(qty) / count(qty) AS mean_qty FROM trades t "
                "GROUP BY symbol")
    assert [(a.name, a.func) for a in node.aggs] == [
        ("__agg0", "sum"), ("__agg1", "max"), ("__agg2", "min"), ("__agg3", "sum"),
        ("__agg4", "count")]
    assert str(node.aggs[0].expr) == '[(col("price")) * (col("qty"))]'
    assert str(node.output[2]) == '[(col("__agg1")) - (col("__agg2"))].alias("spread")'
    assert evaluate(node).to_dicts() == [
        {"symbol": "A", "notional": 112.0, "spread": 2.0, "high": 12.0, "mean_qty": 3.5},
        {"symbol": "B", "notional": 40.0, "spread": 1.0, "high": 20.0, "mean_qty": 2.0},
    ]


def test_having_uses_hidden_aggregates():
    node = plan("SELECT symbol, max(price) AS high FROM trades GROUP BY symbol "
                "HAVING count(*) > 2 AND max(price) > 0")
    assert [(a.name, a.func) for a in node.aggs] == [("__agg0", "max"), ("__agg1", "count_star")]
    assert str(node.having) == \
        '[([(col("__agg1")) > (dyn int: 2)]) & ([(col("__agg0")) > (dyn int: 0)])]'
    assert list(node.schema) == ["symbol", "high"]
    assert evaluate(node).to_dicts() == [{"symbol": "A", "high": 12.0}]
    having_only = plan("SELECT symbol FROM trades GROUP BY symbol HAVING sum(qty) IS NULL")
    assert evaluate(having_only).to_dicts() == []


def test_expression_keys_are_computed_before_the_aggregate():
    node = plan("SELECT lower(symbol) AS sym, qty > 2 AS big, count(*) AS n FROM trades "
                "GROUP BY LOWER(trades.symbol), (qty > 2)")
    assert node.keys == ("__key0", "__key1")
    assert isinstance(node.input, RowMap)
    assert [s.kind for s in node.input.steps] == ["with_columns"]
    assert str(node.output[0]) == 'col("__key0").alias("sym")'
    assert evaluate(node).to_dicts() == [
        {"sym": "a", "big": False, "n": 1}, {"sym": "b", "big": False, "n": 1},
        {"sym": "a", "big": True, "n": 3}, {"sym": "b", "big": None, "n": 1},
    ]
    upper_concat = plan("SELECT upper(symbol) || '!' AS tag, count(*) AS n FROM trades "
                        "GROUP BY upper(symbol)")
    assert evaluate(upper_concat).to_dicts() == [{"tag": "A!", "n": 4}, {"tag": "B!", "n": 2}]


def test_group_by_position_and_output_alias():
    by_position = plan("SELECT symbol, count(*) AS n FROM trades GROUP BY 1")
    assert by_position.keys == ("symbol",)
    by_alias = plan("SELECT upper(symbol) AS s, count(*) AS n FROM trades GROUP BY s")
    assert by_alias.keys == ("__key0",)
    assert evaluate(by_alias).to_dicts() == [{"s": "A", "n": 4}, {"s": "B", "n": 2}]
    window = plan("SELECT tumble(ts, INTERVAL '1' MINUTE) AS w, count(*) AS n FROM trades "
                  "GROUP BY w")
    assert isinstance(window, WindowAgg) and window.time_output == "w"
    with pytest.raises(PlanError, match="GROUP BY position 3"):
        plan("SELECT symbol, count(*) FROM trades GROUP BY 3")


def test_group_by_without_aggregates_is_a_distinct_set_of_keys():
    node = plan("SELECT symbol FROM trades GROUP BY symbol")
    assert isinstance(node, KeyedAgg) and node.aggs == ()
    assert evaluate(node).to_dicts() == [{"symbol": "A"}, {"symbol": "B"}]


# -- stacked inputs and subqueries -----------------------------------------------------------------

def test_aggregating_an_upsert_input_is_refused_but_rowwise_is_fine():
    with pytest.raises(PlanError, match=r"cannot aggregate over 'totals'.*updated in place"):
        plan("SELECT count(*) FROM totals")
    node = plan("SELECT symbol FROM totals WHERE volume > 10")
    assert isinstance(node, RowMap) and not node.appends_only


def test_rowwise_subquery_merges_into_one_rowmap():
    node = plan("SELECT s.sym, s.notional * 2 AS twice FROM "
                "(SELECT symbol AS sym, price * qty AS notional FROM trades WHERE qty > 1) AS s "
                "WHERE s.notional > 40")
    assert isinstance(node, RowMap) and node.input is TRADES
    assert [s.kind for s in node.steps] == ["filter", "select", "filter", "select"]
    assert evaluate(node).to_dicts() == [{"sym": "A", "twice": 132.0}]


def test_window_over_a_rowwise_subquery_keeps_event_time():
    node = plan("SELECT count(*) AS n FROM (SELECT ts AS t, price FROM trades) "
                "GROUP BY tumble(t, INTERVAL '1' MINUTE)")
    assert node.input_time_column == "t"
    assert column("SELECT count(*) AS n FROM (SELECT ts AS t, price FROM trades) "
                  "GROUP BY tumble(t, INTERVAL '1' MINUTE)") == [4, 2]


def test_window_over_a_window_subquery():
    node = plan("SELECT symbol, max(volume) AS v FROM "
                "(SELECT symbol, sum(qty) AS volume, tumble_end(ts, INTERVAL '1' MINUTE) AS we "
                " FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)) "
                "GROUP BY symbol, tumble(we, INTERVAL '1' HOUR)")
    assert isinstance(node.input, WindowAgg) and node.input_time_column == "we"
    with pytest.raises(PlanError, match="cannot aggregate over the subquery"):
        plan("SELECT count(*) FROM (SELECT symbol, count(*) AS n FROM trades GROUP BY symbol)")


# -- refusals ---------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT * FROM trades LEFT JOIN static ON trades.symbol = static.k",
         "LEFT join of two streams on keys alone cannot be maintained"),
        ("SELECT * FROM trades, static", "a join needs ON"),
        ("SELECT price FROM trades UNION SELECT v FROM static", r"UNION \(without ALL\)"),
        ("SELECT price FROM trades EXCEPT SELECT v FROM static", "EXCEPT is not supported"),
        ("SELECT price FROM trades ORDER BY price", "ORDER BY in a materialized view"),
        ("SELECT price FROM trades LIMIT 5", "LIMIT in a materialized view"),
        ("SELECT DISTINCT symbol FROM trades", "DISTINCT in a materialized view"),
        ("SELECT sum(qty) OVER (PARTITION BY symbol) FROM trades", "OVER"),
        ("WITH x AS (SELECT * FROM trades) SELECT * FROM x", "WITH"),
        ("SELECT (SELECT 1) FROM trades", "subqueries in expressions"),
        ("SELECT price FROM trades WHERE qty IN (SELECT v FROM static)", r"IN \(subquery\)"),
        ("SELECT foo(price) FROM trades", "unknown function foo"),
        ("SELECT sqrt(price) FROM trades", "function sqrt is not supported"),
        ("SELECT stddev(price) FROM trades", "aggregate function stddev is not supported"),
        ("SELECT sum(DISTINCT qty) FROM trades", r"sum\(DISTINCT ...\) is not supported"),
        ("SELECT count(DISTINCT qty, price) FROM trades", "takes one expression"),
        ("SELECT max(price, qty) FROM trades", "takes one argument"),
        ("SELECT symbol, price, count(*) FROM trades GROUP BY symbol",
         "column 'price' must appear in GROUP BY"),
        ("SELECT price FROM trades WHERE count(*) > 1", "not allowed in WHERE"),
        ("SELECT count(*) FROM trades GROUP BY sum(qty)", "not allowed in GROUP BY"),
        ("SELECT max(sum(qty)) FROM trades", "not allowed in an aggregate's argument"),
        ("SELECT * , count(*) FROM trades", "must appear in GROUP BY"),
        ("SELECT count(*) FROM trades GROUP BY ROLLUP(symbol)", "ROLLUP is not supported"),
        ("SELECT ts + INTERVAL '1' MONTH FROM trades", "months and years"),
        ("SELECT CAST(price AS DECIMAL) FROM trades", "unsupported type"),
        ("SELECT upper(price) FROM trades", "does not type-check"),
        ("SELECT price FROM trades WHERE qty", "WHERE needs a boolean condition, got Int64"),
        ("SELECT symbol FROM trades GROUP BY symbol HAVING sum(qty)", "HAVING needs a boolean"),
        ("SELECT price AS x, qty AS x FROM trades", "output column name 'x' is given twice"),
        ("SELECT symbol LIKE 'a!%' ESCAPE '!' FROM trades", "ESCAPE is not supported"),
        ("SELECT symbol LIKE symbol FROM trades", "LIKE needs a string literal pattern"),
        ("SELECT 1", "needs FROM"),
        ("SELECT * FROM db.trades", "qualified names are not supported"),
        ("SELECT * FROM trades AS t(a, b)", "column aliases in FROM"),
        ("SELECT ROUND(price, qty) FROM trades", "must be an integer literal"),
        ("SELECT price FROM trades WHERE ts > 'yesterday'",
         "cannot read 'yesterday' as a TIMESTAMP"),
        ("SELECT count() FROM trades", r"count\(\) needs an argument"),
    ],
)
def test_refused(sql, message):
    with pytest.raises(PlanError, match=message):
        plan(sql)


def test_constant_outputs_give_one_row_per_input_row():
    assert column("SELECT 1 AS one FROM trades WHERE symbol = 'B'") == [1, 1]
    assert column("SELECT 'x' AS k FROM trades GROUP BY symbol") == ["x", "x"]
    assert evaluate(plan("SELECT 1 AS one, qty FROM trades WHERE qty > 3")).to_dicts() == [
        {"one": 1, "qty": 4}, {"one": 1, "qty": 6}]


def test_plan_nodes_are_polars_expressions():
    node = plan("SELECT price FROM trades WHERE symbol LIKE 'A%'")
    assert isinstance(node, RowMap)
    assert all(isinstance(step, Step) for step in node.steps)
    assert all(isinstance(e, pl.Expr) for step in node.steps for e in step.exprs)
