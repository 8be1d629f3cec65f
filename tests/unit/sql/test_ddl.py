from __future__ import annotations

import datetime as dt
import logging

import pytest
import sqlglot
from sqlglot import exp

from laminar_polars.catalog import ColumnDef, ColumnType, SinkDef, SourceDef
from laminar_polars.config import Backpressure, SourceConfig, WaitStrategy, WalMode, Watermark
from laminar_polars.errors import ConfigError, SchemaError, SqlError
from laminar_polars.sql import (
    CreateMaterializedView,
    CreateSink,
    CreateSource,
    Describe,
    Drop,
    Explain,
    Query,
    Show,
    parse_statements,
)
from laminar_polars.sql.dialect import EmitProperty, ExplainStatement, Laminar

SPEC_SOURCE = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
) WITH (buffer_size = 4096, backpressure = 'reject', wait_strategy = 'park',
        checkpoint_interval = '10 seconds', wal_mode = 'async');
"""

SPEC_VIEW = """
CREATE MATERIALIZED VIEW ohlc_1min AS
SELECT symbol,
       tumble(ts, INTERVAL '1' MINUTE)     AS window_start,
       tumble_end(ts, INTERVAL '1' MINUTE) AS window_end,
       first_value(price) AS open, max(price) AS high,
       min(price) AS low, last_value(price) AS close,
       sum(qty) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, tumble(ts, INTERVAL '1' MINUTE)
EMIT ON WINDOW CLOSE;
"""


def one(sql: str):
    [statement] = parse_statements(sql)
    return statement


def source(columns: str, with_: str = "") -> SourceDef:
    statement = one(f"CREATE SOURCE s ({columns}) {with_}")
    assert isinstance(statement, CreateSource)
    return statement.source


# --- CREATE SOURCE -------------------------------------------------------------------


def test_spec_create_source_reads_every_column_watermark_and_option() -> None:
    statement = one(SPEC_SOURCE)
    expected = SourceDef(
        "trades",
        [
            ColumnDef("symbol", ColumnType.STRING, not_null=True),
            ColumnDef("price", ColumnType.FLOAT64),
            ColumnDef("qty", ColumnType.INT64),
            ColumnDef("ts", ColumnType.TIMESTAMP, not_null=True),
        ],
        SourceConfig(
            buffer_size=4096,
            backpressure=Backpressure.REJECT,
            wait_strategy=WaitStrategy.PARK,
            checkpoint_interval=dt.timedelta(seconds=10),
            wal_mode=WalMode.ASYNC,
            watermark=Watermark("ts", dt.timedelta(milliseconds=100)),
        ),
    )
    assert statement == CreateSource(expected, if_not_exists=False)
    assert statement.source.watermark.delay_us == 100_000


def test_create_source_without_with_uses_default_config() -> None:
    assert source("a INT").config == SourceConfig().validate()
    assert one("CREATE SOURCE IF NOT EXISTS s (a INT)").if_not_exists is True


@pytest.mark.parametrize(
    ("sql_type", "column_type"),
    [
        ("VARCHAR", ColumnType.STRING),
        ("VARCHAR(32)", ColumnType.STRING),
        ("TEXT", ColumnType.STRING),
        ("STRING", ColumnType.STRING),
        ("DOUBLE", ColumnType.FLOAT64),
        ("DOUBLE PRECISION", ColumnType.FLOAT64),
        ("FLOAT8", ColumnType.FLOAT64),
        ("REAL", ColumnType.FLOAT32),
        ("FLOAT4", ColumnType.FLOAT32),
        ("BIGINT", ColumnType.INT64),
        ("INT", ColumnType.INT32),
        ("INTEGER", ColumnType.INT32),
        ("SMALLINT", ColumnType.INT16),
        ("BOOLEAN", ColumnType.BOOLEAN),
        ("TIMESTAMP", ColumnType.TIMESTAMP),
        ("DATE", ColumnType.DATE),
        ("bigint", ColumnType.INT64),
    ],
)
def test_column_types(sql_type: str, column_type: ColumnType) -> None:
    assert source(f"a {sql_type}").columns == [ColumnDef("a", column_type)]


def test_null_and_not_null() -> None:
    columns = source("a INT NOT NULL, b INT NULL, c INT").columns
    assert [c.not_null for c in columns] == [True, False, False]


@pytest.mark.parametrize(
    ("watermark", "delay"),
    [
        ("ts - INTERVAL '100' MILLISECOND", dt.timedelta(milliseconds=100)),
        ("ts - INTERVAL '100ms'", dt.timedelta(milliseconds=100)),
        ("ts - INTERVAL '1' SECOND", dt.timedelta(seconds=1)),
        ("ts - INTERVAL '2 seconds'", dt.timedelta(seconds=2)),
        ("ts - INTERVAL '1' MINUTE", dt.timedelta(minutes=1)),
        ("ts", dt.timedelta(0)),
    ],
)
def test_watermark_interval_spellings(watermark: str, delay: dt.timedelta) -> None:
    wm = source(f"ts TIMESTAMP, WATERMARK FOR ts AS {watermark}").watermark
    assert wm == Watermark("ts", delay)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("'spin'", WaitStrategy.SPIN),
        ("'spin_yield'", WaitStrategy.spin_yield(100)),
        ("'spin_yield(7)'", WaitStrategy.spin_yield(7)),
        ("park", WaitStrategy.PARK),  # a bare word reads like its quoted spelling
    ],
)
def test_wait_strategy_values(value: str, expected: WaitStrategy) -> None:
    config = source("a INT", f"WITH (wait_strategy = {value})").config
    assert config.wait_strategy == expected


def test_other_option_values() -> None:
    config = source(
        "a INT",
        "WITH (backpressure = 'drop_oldest', wal_mode = 'sync', "
        "checkpoint_interval = INTERVAL '5' SECOND, buffer_size = 2)",
    ).config
    assert (config.backpressure, config.wal_mode) == (Backpressure.DROP_OLDEST, WalMode.SYNC)
    assert (config.checkpoint_interval, config.buffer_size) == (dt.timedelta(seconds=5), 2)


# --- CREATE SINK / MATERIALIZED VIEW ---------------------------------------------------


@pytest.mark.parametrize("sql", ["CREATE SINK out FROM v", "CREATE SINK out AS SELECT * FROM v"])
def test_create_sink(sql: str) -> None:
    assert one(sql) == CreateSink(SinkDef("out", "v"), if_not_exists=False)
    assert one(sql.replace("SINK", "SINK IF NOT EXISTS")).if_not_exists is True


@pytest.mark.parametrize(
    "query",
    [
        "SELECT a FROM v",
        "SELECT * FROM v WHERE a > 1",
        "SELECT * FROM v AS x",
        "SELECT * FROM v JOIN w ON v.a = w.a",
        "SELECT *, 1 FROM v",
    ],
)
def test_create_sink_refuses_anything_but_select_star(query: str) -> None:
    with pytest.raises(SqlError, match="CREATE SINK out FROM <name>"):
        parse_statements(f"CREATE SINK out AS {query}")


@pytest.mark.parametrize(
    ("clause", "emit"),
    [("EMIT ON WINDOW CLOSE", "on_window_close"), ("emit on update", "on_update"), ("", None)],
)
def test_create_materialized_view_emit(clause: str, emit: str | None) -> None:
    statement = one(f"CREATE MATERIALIZED VIEW v AS SELECT a FROM t {clause}")
    assert isinstance(statement, CreateMaterializedView)
    assert (statement.name, statement.emit, statement.if_not_exists) == ("v", emit, False)
    assert statement.query == sqlglot.parse_one("SELECT a FROM t")
    suffix = f" EMIT {clause[5:].upper()}" if clause else ""
    assert statement.sql == f"CREATE MATERIALIZED VIEW v AS SELECT a FROM t{suffix}"


def test_spec_materialized_view_keeps_the_select_tree() -> None:
    statement = one(SPEC_VIEW)
    assert (statement.name, statement.emit) == ("ohlc_1min", "on_window_close")
    assert isinstance(statement.query, exp.Select)
    assert statement.query.args["group"] is not None
    assert [e.alias_or_name for e in statement.query.expressions] == [
        "symbol", "window_start", "window_end", "open", "high", "low", "close", "volume", "trades",
    ]  # fmt: skip
    assert not list(statement.query.find_all(EmitProperty))


def test_emit_is_not_taken_for_an_alias() -> None:
    # Without the guard `t EMIT` and `b EMIT` would read as aliases named "emit".
    for sql in ("SELECT * FROM t EMIT ON UPDATE", "SELECT a, b EMIT ON UPDATE"):
        statement = one(f"CREATE MATERIALIZED VIEW IF NOT EXISTS v AS {sql}")
        assert (statement.emit, statement.if_not_exists) == ("on_update", True)
        assert not list(statement.query.find_all(exp.Alias, exp.TableAlias))
    # ... while a column or table that is really named emit still is one.
    statement = one("CREATE MATERIALIZED VIEW v AS SELECT a emit FROM t emit")
    assert statement.emit is None
    assert statement.query.sql() == "SELECT a AS emit FROM t AS emit"


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE SINK s FROM t EMIT ON UPDATE",
        "SELECT * FROM t EMIT ON UPDATE",
        "CREATE VIEW v AS SELECT * FROM t EMIT ON UPDATE",
    ],
)
def test_emit_outside_a_materialized_view_is_an_error(sql: str) -> None:
    with pytest.raises(SqlError) as info:
        parse_statements(sql)
    assert (info.value.line, info.value.column) == (1, sql.index("EMIT") + 1)


# --- DROP / SHOW / DESCRIBE / EXPLAIN / SELECT ----------------------------------------


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("DROP SOURCE trades", Drop("source", "trades", False)),
        ("DROP SINK IF EXISTS out", Drop("sink", "out", True)),
        ("DROP MATERIALIZED VIEW ohlc_1min", Drop("materialized view", "ohlc_1min", False)),
        ("DROP TABLE IF EXISTS symbols", Drop("table", "symbols", True)),
    ],
)
def test_drop(sql: str, expected: Drop) -> None:
    assert one(sql) == expected


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("SHOW SOURCES", "sources"),
        ("SHOW SINKS", "sinks"),
        ("show materialized views", "materialized views"),
        ("SHOW TABLES", "tables"),
    ],
)
def test_show(sql: str, kind: str) -> None:
    assert one(sql) == Show(kind)


def test_describe_explain_and_query() -> None:
    assert one("DESCRIBE trades") == Describe("trades")
    explain = one("EXPLAIN SELECT a FROM t WHERE a > 1")
    assert explain == Explain(sqlglot.parse_one("SELECT a FROM t WHERE a > 1"))
    query = one("SELECT a FROM t UNION ALL SELECT a FROM u")
    assert isinstance(query, Query) and isinstance(query.query, exp.Union)


def test_several_statements_in_order_skipping_empty_ones() -> None:
    statements = parse_statements(
        SPEC_SOURCE + SPEC_VIEW + "CREATE SINK ohlc_output FROM ohlc_1min;;\n"
        "DROP SINK ohlc_output; DROP MATERIALIZED VIEW ohlc_1min; DROP SOURCE trades;"
        "SHOW SOURCES; SHOW MATERIALIZED VIEWS; SHOW SINKS; DESCRIBE trades; EXPLAIN SELECT 1;"
    )
    kinds = [type(s).__name__ for s in statements]
    assert kinds == [
        "CreateSource", "CreateMaterializedView", "CreateSink", "Drop", "Drop", "Drop",
        "Show", "Show", "Show", "Describe", "Explain",
    ]  # fmt: skip
    assert [s.kind for s in statements[3:9]] == [
        "sink", "materialized view", "source", "sources", "materialized views", "sinks",
    ]  # fmt: skip
    assert parse_statements(" ; -- nothing\n") == []
    assert parse_statements("SHOW SINKS; -- trailing comment") == [Show("sinks")]


@pytest.mark.parametrize(
    "sql",
    [
        "SHOW SOURCES",
        "SHOW MATERIALIZED VIEWS",
        "EXPLAIN SELECT a FROM t",
        "CREATE MATERIALIZED VIEW v AS SELECT a FROM t EMIT ON WINDOW CLOSE",
        # written as read, not as PostgreSQL would mean them: Polars SQL's meanings
        "SELECT TRY_CAST(a AS BIGINT), LOG10(x), LOG2(x), BIT_AND(a, 3) FROM t",
    ],
)
def test_dialect_round_trip(sql: str) -> None:
    tree = sqlglot.parse_one(sql, read="laminar")  # the dialect is registered by name
    assert not isinstance(tree, exp.Command)
    assert tree.sql(dialect="laminar") == sql
    assert isinstance(
        sqlglot.parse_one(sql, read=Laminar),
        (exp.Show, ExplainStatement, exp.Create, exp.Select),
    )


# --- errors ----------------------------------------------------------------------------


def test_malformed_sql_points_at_the_bad_token() -> None:
    sql = "SHOW SINKS;\nCREATE SOURCE t (\n    a INT,\n    b INT NOT NULL\n    c INT\n)"
    with pytest.raises(SqlError, match=r"Expecting \) \(line 5, column 5\)") as info:
        parse_statements(sql)
    assert (info.value.line, info.value.column) == (5, 5)  # at `c`, where `,` was missing


def test_error_at_a_multi_character_token_points_at_its_start() -> None:
    with pytest.raises(SqlError, match="Expected table name but got 'WHERE'") as info:
        parse_statements("SELECT *\n  FROM\n    WHERE x")
    assert (info.value.line, info.value.column) == (3, 5)


def test_unterminated_string_has_a_position() -> None:
    with pytest.raises(SqlError, match="unterminated quote") as info:
        parse_statements("SELECT 1;\nSELECT a,\n  'abc")
    assert (info.value.line, info.value.column) == (3, 3)


def test_a_statement_sqlglot_would_keep_as_text_points_at_the_leftover_token() -> None:
    sql = "SHOW SOURCES;\nCREATE MATERIALIZED VIEW v AS\n  SELECT a FROM t\n  EMIT ON UPDATE EMIT"
    with pytest.raises(SqlError, match="unexpected 'EMIT' after 'UPDATE'") as info:
        parse_statements(sql)
    assert (info.value.line, info.value.column) == (4, 18)


def test_bad_show_kind() -> None:
    with pytest.raises(SqlError, match="expected SOURCES, SINKS") as info:
        parse_statements("SHOW VIEWS")
    assert (info.value.line, info.value.column) == (1, 6)


def test_unknown_type_is_a_schema_error() -> None:
    with pytest.raises(SchemaError, match="unsupported column type 'FOO'"):
        source("a FOO")
    with pytest.raises(SchemaError, match="'TIMESTAMPTZ'"):
        source("a TIMESTAMP WITH TIME ZONE")


def test_unknown_with_option_names_it_and_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="unknown WITH option 'connector'") as info:
        source("a INT", "WITH (connector = 'kafka')")
    known = "buffer_size, backpressure, wait_strategy, checkpoint_interval, wal_mode"
    assert known in str(info.value)
    with pytest.raises(ConfigError, match="given twice"):
        source("a INT", "WITH (wal_mode = 'sync', wal_mode = 'async')")


@pytest.mark.parametrize(
    ("with_", "message"),
    [
        ("WITH (backpressure = 'sometimes')", "backpressure: unknown value 'sometimes'"),
        ("WITH (buffer_size = 1000)", "power of two >= 2, got 1000"),
        ("WITH (buffer_size = -4)", "power of two >= 2, got -4"),
        ("WITH (buffer_size = '1024')", "expected an int power of two"),
        ("WITH (wait_strategy = 'nap')", "wait_strategy: unknown value"),
        ("WITH (wal_mode = 'maybe')", "wal_mode: unknown value"),
        ("WITH (checkpoint_interval = 'soon')", "checkpoint_interval: cannot read"),
    ],
)
def test_invalid_option_values_are_config_errors(with_: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        source("a INT", with_)


def test_watermark_errors() -> None:
    with pytest.raises(SchemaError, match="has no column 'ts'"):
        source("a TIMESTAMP, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND")
    with pytest.raises(SchemaError, match="must be TIMESTAMP"):
        source("a INT, WATERMARK FOR a AS a")
    with pytest.raises(SqlError, match="on one column"):
        source("a TIMESTAMP, b TIMESTAMP, WATERMARK FOR a AS b - INTERVAL '1' SECOND")
    with pytest.raises(SqlError, match="on one column"):
        source("a TIMESTAMP, WATERMARK FOR a AS a + INTERVAL '1' SECOND")
    with pytest.raises(SqlError, match="cannot read"):
        source("a TIMESTAMP, WATERMARK FOR a AS a - INTERVAL '3 fortnights'")
    with pytest.raises(SqlError, match="only one WATERMARK"):
        source("a TIMESTAMP, WATERMARK FOR a AS a, WATERMARK FOR a AS a")


@pytest.mark.parametrize(
    "sql",
    [
        "INSERT INTO t VALUES (1)",
        "UPDATE t SET a = 1",
        "DELETE FROM t",
        "CREATE TABLE t (a INT)",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW v",
        "DESCRIBE SELECT 1",
        "EXPLAIN DROP SOURCE t",
        "VACUUM t",
        "CALL refresh()",
        "CREATE FUNCTION f() RETURNS INT AS 'select 1'",
    ],
)
def test_unsupported_statements_name_the_supported_ones(
    sql: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sqlglot"):
        with pytest.raises(SqlError, match="supported: CREATE SOURCE, CREATE SINK"):
            parse_statements(f"SHOW SOURCES; {sql}")
    # sqlglot's "Falling back to parsing as a 'Command'" warning must not reach the user.
    assert caplog.records == []


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("CREATE OR REPLACE SOURCE s (a INT)", "OR REPLACE"),
        ("CREATE SOURCE s", "needs a column list"),
        ("CREATE SOURCE s (a INT PRIMARY KEY)", "unsupported column constraint"),
        ("CREATE SOURCE db.s (a INT)", "plain object name"),
        ("DROP TABLE a, b", "exactly one name"),
        ("DROP SOURCE a CASCADE", "CASCADE"),
    ],
)
def test_other_sql_errors(sql: str, message: str) -> None:
    with pytest.raises(SqlError, match=message):
        parse_statements(sql)
