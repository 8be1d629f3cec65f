"""SQL text → statement objects: the DDL, SHOW/DESCRIBE/EXPLAIN, and bare queries.

:func:`parse_statements` reads ``;``-separated SQL with the :class:`Laminar` dialect
and turns each tree, in one walk, into a plain dataclass the database acts on. DDL
is checked here (types, watermark, ``WITH`` options); queries stay sqlglot trees
for the engine layer to plan.

Errors: unreadable SQL → `SqlError` with the 1-based line and column of the bad
token (a leftover token is named with the word before it, and a word one typo
away from a keyword gets "did you mean ...?"); a statement this engine does not
run → `SqlError`; an unknown column type
→ `SchemaError`; an unknown or invalid ``WITH`` option → `ConfigError`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError

from laminar_polars.catalog import ColumnDef, ColumnType, SinkDef, SourceDef
from laminar_polars.config import (
    Retention,
    SourceConfig,
    Watermark,
    parse_duration,
    parse_retention,
    parse_state_ttl,
)
from laminar_polars.errors import ConfigError, SqlError
from laminar_polars.plan import EmitMode
from laminar_polars.sql.dialect import (
    STATEMENT_WORDS,
    SUPPORTED_STATEMENTS,
    EmitProperty,
    ExplainStatement,
    Laminar,
    TokenPositionError,
    near_miss,
)

__all__ = [
    "CreateMaterializedView", "CreateSink", "CreateSource", "Describe", "Drop", "Explain",
    "Query", "Show", "Statement", "parse_statements",
]  # fmt: skip

SOURCE_OPTIONS = ("buffer_size", "backpressure", "wait_strategy", "checkpoint_interval", "wal_mode")
VIEW_OPTIONS = ("retention", "state_ttl")
_EMIT: dict[str, EmitMode] = {"ON WINDOW CLOSE": "on_window_close", "ON UPDATE": "on_update"}
_DROP_KINDS = {"SOURCE": "source", "SINK": "sink", "TABLE": "table"}


@dataclasses.dataclass(frozen=True)
class CreateSource:
    """``CREATE SOURCE [IF NOT EXISTS] name (columns, WATERMARK ...) WITH (...)``."""

    source: SourceDef
    if_not_exists: bool = False


@dataclasses.dataclass(frozen=True)
class CreateSink:
    """``CREATE SINK [IF NOT EXISTS] name FROM input``."""

    sink: SinkDef
    if_not_exists: bool = False


@dataclasses.dataclass(frozen=True)
class CreateMaterializedView:
    """``query`` is the SELECT tree; ``sql`` the statement as the dialect writes it back.

    ``emit`` is 'on_window_close', 'on_update', or None (the engine's default).
    ``retention`` is ``WITH (retention = ...)`` read (`Retention`), or None
    for the database's default. ``state_ttl_us`` is ``WITH (state_ttl =
    ...)`` in microseconds (an unbounded join's state TTL), or None.
    """

    name: str
    query: exp.Query
    emit: EmitMode | None
    sql: str
    if_not_exists: bool = False
    retention: Retention | None = None
    state_ttl_us: int | None = None


@dataclasses.dataclass(frozen=True)
class Drop:
    """``kind`` is 'source', 'sink', 'materialized view' or 'table'."""

    kind: str
    name: str
    if_exists: bool = False


@dataclasses.dataclass(frozen=True)
class Show:
    """``kind`` is 'sources', 'sinks', 'materialized views' or 'tables'."""

    kind: str


@dataclasses.dataclass(frozen=True)
class Describe:
    """``DESCRIBE name``."""

    name: str


@dataclasses.dataclass(frozen=True)
class Explain:
    """``EXPLAIN <query>``; ``query`` is the query's tree."""

    query: exp.Query


@dataclasses.dataclass(frozen=True)
class Query:
    """A bare query (an ad-hoc SELECT); ``query`` is its tree."""

    query: exp.Query


Statement = (
    CreateSource | CreateSink | CreateMaterializedView | Drop | Show | Describe | Explain | Query
)


def parse_statements(sql: str) -> list[Statement]:
    """Parse ``;``-separated SQL into statement objects, in order.

    Parameters
    ----------
    sql
        One or more statements; empty ones (``;;``) are skipped.

    Raises
    ------
    SqlError
        Unreadable or unsupported SQL; ``line``/``column`` point at the bad token.
    SchemaError
        An unknown column type, or a watermark on a missing column.
    ConfigError
        An unknown or invalid ``WITH`` option.

    Examples
    --------
    >>> [drop, show] = parse_statements("DROP SOURCE IF EXISTS trades; SHOW SINKS")
    >>> drop
    Drop(kind='source', name='trades', if_exists=True)
    >>> show
    Show(kind='sinks')
    >>> parse_statements("SELECT * FROM\\n  WHERE x")[0]
    Traceback (most recent call last):
    ...
    laminar_polars.errors.SqlError: Expected table name but got 'WHERE' (line 2, column 3)
    """
    try:
        trees = sqlglot.parse(sql, read=Laminar)
    except ParseError as error:
        raise _parse_error(error) from None
    except TokenPositionError as error:
        raise SqlError(str(error), error.line, error.column) from None
    except TokenError as error:
        raise SqlError(str(error)) from None
    # Empty statements come back as None, or as a Semicolon holding a trailing comment.
    return [_statement(t) for t in trees if t is not None and not isinstance(t, exp.Semicolon)]


def _parse_error(error: ParseError) -> SqlError:
    if not error.errors:
        return SqlError(str(error))
    info = error.errors[0]
    line, col, highlight = info.get("line"), info.get("col"), info.get("highlight") or ""
    # sqlglot's "col" is the bad token's *last* character; point at its first instead.
    if col is not None and highlight and "\n" not in highlight:
        col = col - len(highlight) + 1
    description = info.get("description") or str(error)
    head, found, token = description.partition(" but got <Token")
    if found:  # two sqlglot messages embed a Token's repr; name the token's text instead
        description = f"{head} but got {'end of input' if 'SENTINEL' in token else repr(highlight)}"
    return SqlError(description, line, col)


def _statement(tree: exp.Expr) -> Statement:
    if isinstance(tree, exp.Create):
        return _create(tree)
    if isinstance(tree, exp.Drop):
        return _drop(tree)
    if isinstance(tree, exp.Show):
        return Show(tree.name.lower())
    if isinstance(tree, exp.Describe) and isinstance(tree.this, exp.Table):
        return Describe(_name(tree.this))
    if isinstance(tree, ExplainStatement) and isinstance(tree.this, exp.Query):
        return Explain(tree.this)
    if isinstance(tree, exp.Query):
        return Query(tree)
    raise _unsupported(tree)


def _unsupported(tree: exp.Expr) -> SqlError:
    text = _text(tree)
    words = text.split(maxsplit=1)
    keyword = near_miss(words[0], STATEMENT_WORDS) if words else None
    hint = f"; did you mean {keyword} instead of {words[0]!r}?" if keyword else ""
    text = text if len(text) <= 60 else text[:57] + "..."
    return SqlError(f"unsupported statement {text!r}{hint}; supported: {SUPPORTED_STATEMENTS}")


def _text(node: exp.Expr) -> str:
    # For messages: never let the generator log "unsupported" warnings at the user.
    return node.sql(dialect=Laminar, unsupported_level=ErrorLevel.IGNORE)


def _name(table: exp.Expr) -> str:
    if not isinstance(table, exp.Table) or table.args.get("db") or not table.name:
        raise SqlError(f"expected a plain object name, got {_text(table)!r}")
    return table.name


def _create(tree: exp.Create) -> Statement:
    kind = tree.kind or ""
    properties = tree.args.get("properties")
    materialized = bool(properties and properties.find(exp.MaterializedProperty))
    if kind not in ("SOURCE", "SINK") and not (kind == "VIEW" and materialized):
        raise _unsupported(tree)
    if tree.args.get("replace"):
        raise SqlError("CREATE OR REPLACE is not supported; DROP the object first")
    if_not_exists = bool(tree.args.get("exists"))
    if kind == "SOURCE":
        return CreateSource(_source(tree), if_not_exists)
    if kind == "SINK":
        return CreateSink(_sink(tree), if_not_exists)
    return _materialized_view(tree, if_not_exists)


def _source(tree: exp.Create) -> SourceDef:
    schema = tree.this
    if not isinstance(schema, exp.Schema):
        raise SqlError(f"CREATE SOURCE {_name(schema)} needs a column list")
    name = _name(schema.this)
    columns: list[ColumnDef] = []
    watermark: Watermark | None = None
    for item in schema.expressions:
        if isinstance(item, exp.WatermarkColumnConstraint):
            if watermark is not None:
                raise SqlError(f"source {name!r}: only one WATERMARK is allowed")
            watermark = _watermark(item)
        elif isinstance(item, exp.ColumnDef):
            columns.append(_column(name, item))
        else:
            raise SqlError(f"source {name!r}: unsupported item {_text(item)!r}")
    config = SourceConfig(**_with_options(name, tree.args.get("properties")), watermark=watermark)
    return SourceDef(name, columns, config.validate())


def _column(source: str, column: exp.ColumnDef) -> ColumnDef:
    dtype = column.args.get("kind")
    if not isinstance(dtype, exp.DataType):
        raise SqlError(f"source {source!r}: column {column.name!r} needs a type")
    # A name sqlglot does not know stays a USERDEFINED type holding the text as written.
    user_type = dtype.args.get("kind") if dtype.this == exp.DType.USERDEFINED else None
    type_name = user_type.name if user_type else dtype.this.name
    not_null = False
    for constraint in column.args.get("constraints") or []:
        kind = constraint.args.get("kind")
        if not isinstance(kind, exp.NotNullColumnConstraint):
            raise SqlError(
                f"source {source!r}: unsupported column constraint {_text(constraint)!r}"
            )
        not_null = not kind.args.get("allow_null")  # plain NULL sets allow_null
    return ColumnDef(column.name, ColumnType.from_sql(type_name), not_null)


def _watermark(item: exp.WatermarkColumnConstraint) -> Watermark:
    column, expression = item.this, item.expression
    if isinstance(expression, exp.Column):  # `AS ts`: the watermark is the maximum itself
        delay_column, delay = expression, dt.timedelta(0)
    elif isinstance(expression, exp.Sub) and isinstance(expression.expression, exp.Interval):
        delay_column, delay = expression.this, _interval(expression.expression)
    else:
        delay_column, delay = None, None
    if (
        not isinstance(column, exp.Column)
        or not isinstance(delay_column, exp.Column)
        or delay_column.name != column.name
        or delay is None
    ):
        raise SqlError(
            f"WATERMARK must be 'FOR col AS col - INTERVAL ...' on one column, got {_text(item)!r}"
        )
    return Watermark(column.name, delay)


def _interval(interval: exp.Interval) -> dt.timedelta:
    # sqlglot splits INTERVAL '100ms' and '2 seconds' into value and unit already;
    # '1 minute 2 seconds' stays one string, which parse_duration refuses.
    unit = interval.args.get("unit")
    text = f"{interval.this.name} {unit.name}" if unit else interval.this.name
    try:
        return parse_duration(text, what="INTERVAL")
    except ConfigError as error:
        raise SqlError(str(error)) from None


def _with_options(source: str, properties: exp.Properties | None) -> dict[str, Any]:
    """The ``WITH`` options as `SourceConfig` keyword arguments, each value as
    written (`_option_value`); Any, since `SourceConfig.validate` is what checks
    a value against its setting."""
    options: dict[str, Any] = {}
    for prop in properties.expressions if properties else []:
        # Keys sqlglot knows (FORMAT, ...) come back as their own Property classes.
        key = prop.name.lower() if type(prop) is exp.Property else _text(prop)
        if key not in SOURCE_OPTIONS:
            raise ConfigError(
                f"source {source!r}: unknown WITH option {key!r}; "
                f"expected one of {', '.join(SOURCE_OPTIONS)}"
            )
        if key in options:
            raise ConfigError(f"source {source!r}: WITH option {key!r} is given twice")
        options[key] = _option_value(key, prop.args.get("value"))
    return options


def _option_value(key: str, value: exp.Expr | None) -> str | int | float | dt.timedelta:
    if isinstance(value, exp.Literal):
        return str(value.this) if value.is_string else _number(value)
    if isinstance(value, exp.Neg) and isinstance(value.this, exp.Literal) and value.this.is_number:
        return -_number(value.this)
    if isinstance(value, exp.Interval):
        return _interval(value)
    if isinstance(value, (exp.Var, exp.Identifier, exp.Column)):  # bare word: park, async
        return value.name
    shown = _text(value) if value is not None else None
    raise ConfigError(f"WITH option {key!r}: expected a number or a quoted string, got {shown!r}")


def _number(literal: exp.Literal) -> int | float:
    text = str(literal.this)
    number = float(text)
    return int(number) if number.is_integer() and "." not in text else number


def _sink(tree: exp.Create) -> SinkDef:
    name = _name(tree.this)
    query = tree.expression
    # `CREATE SINK s FROM x` and `... AS SELECT * FROM x` give the same tree.
    from_ = query.args.get("from_") if isinstance(query, exp.Select) else None
    if (
        tree.args.get("properties")
        or from_ is None
        or len(query.expressions) != 1
        or not isinstance(query.expressions[0], exp.Star)
        or any(v for k, v in query.args.items() if k not in ("expressions", "from_"))
        or not isinstance(from_.this, exp.Table)
        or from_.this.args.get("alias")
    ):
        shown = _text(query) if query is not None else ""
        raise SqlError(
            f"CREATE SINK {name} reads one source or view: 'CREATE SINK {name} FROM <name>' "
            f"or 'AS SELECT * FROM <name>', got {shown!r}"
        )
    return SinkDef(name, _name(from_.this))


def _materialized_view(tree: exp.Create, if_not_exists: bool) -> CreateMaterializedView:
    name = _name(tree.this)
    if not isinstance(tree.expression, exp.Query):
        raise SqlError(f"CREATE MATERIALIZED VIEW {name} needs AS SELECT ...")
    emit: EmitMode | None = None
    retention: Retention | None = None
    state_ttl: int | None = None
    seen: set[str] = set()
    for prop in tree.args["properties"].expressions:
        if isinstance(prop, EmitProperty):
            emit = _EMIT[prop.name]
        elif type(prop) is exp.Property and prop.name.lower() in VIEW_OPTIONS:
            option = prop.name.lower()
            if option in seen:
                raise ConfigError(f"materialized view {name!r}: WITH option {option!r} "
                                  "is given twice")
            seen.add(option)
            value = _option_value(option, prop.args.get("value"))
            what = f"materialized view {name!r}: {option}"
            if option == "retention":
                retention = parse_retention(value, what=what)
            else:
                state_ttl = parse_state_ttl(value, what=what)
        elif type(prop) is exp.Property:
            raise ConfigError(f"materialized view {name!r}: unknown WITH option "
                              f"{prop.name.lower()!r}; expected one of {', '.join(VIEW_OPTIONS)}")
        elif not isinstance(prop, exp.MaterializedProperty):
            raise SqlError(f"materialized view {name!r}: unsupported clause {_text(prop)!r}")
    return CreateMaterializedView(name, tree.expression, emit, _text(tree), if_not_exists,
                                  retention, state_ttl)


def _drop(tree: exp.Drop) -> Drop:
    kind = "materialized view" if tree.kind == "VIEW" and tree.args.get("materialized") else None
    kind = kind or _DROP_KINDS.get(tree.kind or "")
    if kind is None or tree.args.get("temporary"):
        raise _unsupported(tree)
    tables = tree.args.get("tables") or []
    if len(tables) != 1:
        raise SqlError(f"DROP {kind.upper()} takes exactly one name")
    if tree.args.get("cascade"):
        raise SqlError(f"DROP {kind.upper()} ... CASCADE is not supported; drop the readers first")
    return Drop(kind, _name(tables[0]), bool(tree.args.get("exists")))
