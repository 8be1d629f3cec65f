"""The ``laminar`` sqlglot dialect: RisingWave's, plus the statements of docs/sql.md.

RisingWave's dialect already reads ``CREATE SOURCE … (…, WATERMARK FOR …) WITH (…)``,
``CREATE SINK … FROM …`` and ``DROP SOURCE|SINK``. On top of it this dialect reads:

- ``SHOW SOURCES | SINKS | MATERIALIZED VIEWS | TABLES`` → ``exp.Show(this="SOURCES")``;
- ``EXPLAIN <statement>`` → :class:`ExplainStatement`;
- a trailing ``EMIT ON WINDOW CLOSE`` / ``EMIT ON UPDATE`` after
  ``CREATE MATERIALIZED VIEW name AS <query>`` → an :class:`EmitProperty` appended to
  the ``Create``'s ``properties`` (``this`` is ``"ON WINDOW CLOSE"`` or ``"ON UPDATE"``);
  the generator writes it back after the query.

Anything sqlglot would otherwise keep as an opaque ``exp.Command`` (with a logged
warning) is a ``ParseError`` here instead, pointing at the statement's first token:
a streaming engine must not run half-understood SQL.

Examples
--------
>>> import sqlglot
>>> from laminar_polars.sql.dialect import Laminar, EmitProperty
>>> tree = sqlglot.parse_one(
...     "CREATE MATERIALIZED VIEW v AS SELECT * FROM t EMIT ON UPDATE", read=Laminar)
>>> tree.find(EmitProperty).name
'ON UPDATE'
>>> tree.sql(dialect=Laminar)
'CREATE MATERIALIZED VIEW v AS SELECT * FROM t EMIT ON UPDATE'
>>> sqlglot.parse_one("SHOW MATERIALIZED VIEWS", read="laminar").name
'MATERIALIZED VIEWS'
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, ClassVar

from sqlglot import exp
from sqlglot.dialects.risingwave import RisingWave
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType
from sqlglot.trie import new_trie

if TYPE_CHECKING:
    # sqlglot binds RisingWave.Parser and .Generator as class attributes
    # (`Parser = RisingWaveParser`), which a type checker does not take as a base
    # class; these are the classes they name. (sqlglot.generators exists from
    # 30.1 only, so at run time the dialect's attributes are used.)
    from sqlglot.generators.risingwave import RisingWaveGenerator as _RisingWaveGenerator
    from sqlglot.parsers.risingwave import RisingWaveParser as _RisingWaveParser
else:
    _RisingWaveParser = RisingWave.Parser
    _RisingWaveGenerator = RisingWave.Generator

__all__ = [
    "EmitProperty",
    "ExplainStatement",
    "Laminar",
    "STATEMENT_WORDS",
    "SUPPORTED_STATEMENTS",
    "TokenPositionError",
    "near_miss",
]

SUPPORTED_STATEMENTS = (
    "CREATE SOURCE, CREATE SINK, CREATE MATERIALIZED VIEW, "
    "DROP SOURCE|SINK|MATERIALIZED VIEW|TABLE, SHOW SOURCES|SINKS|MATERIALIZED VIEWS|TABLES, "
    "DESCRIBE, EXPLAIN <select> and SELECT"
)

# Keywords a misspelled word is compared with (see `near_miss`). Words shorter than
# four letters are left out: one typo away from them is too many ordinary names.
_KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "JOIN", "LEFT",
    "INNER", "ASOF", "UNION", "DISTINCT", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE",
    "NULL", "INTERVAL", "FILTER", "EMIT", "WINDOW", "CLOSE", "UPDATE", "WITH", "CREATE",
    "SOURCE", "SOURCES", "SINK", "SINKS", "MATERIALIZED", "VIEW", "VIEWS", "TABLE", "TABLES",
    "DROP", "SHOW", "DESCRIBE", "EXPLAIN", "WATERMARK", "EXISTS",
)  # fmt: skip
# The words a statement starts with; one that does not is not a statement we run.
STATEMENT_WORDS = ("SELECT", "WITH", "CREATE", "DROP", "SHOW", "DESCRIBE", "EXPLAIN")
_UNEXPECTED = "Invalid expression / Unexpected token"  # sqlglot's message for leftovers


def _one_edit(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` differ by one letter changed, added or removed, or
    two neighbours swapped."""
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]])
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1:] == short for i in range(len(long)))


def near_miss(word: str, keywords: Collection[str] = _KEYWORDS) -> str | None:
    """The keyword ``word`` looks like a misspelling of (one typo away), if any.

    >>> near_miss("FORM"), near_miss("gropu"), near_miss("FROM"), near_miss("price")
    ('FROM', 'GROUP BY', None, None)
    """
    upper = word.upper()
    if len(upper) < 3 or not upper.isalpha():
        return None
    for keyword in keywords:
        head = keyword.split(" ")[0]
        if upper == head:
            return None  # the keyword itself, whatever else it is near
    return next((k for k in keywords if len(k) >= 4 and _one_edit(upper, k.split(" ")[0])),
                None)


# Word sequences after EMIT, and the mode each one names.
_EMIT_MODES = (("ON", "WINDOW", "CLOSE"), ("ON", "UPDATE"))
_SHOW_KINDS = ("SOURCES", "SINKS", "MATERIALIZED VIEWS", "TABLES")


class EmitProperty(exp.Expression):
    """``EMIT ON WINDOW CLOSE`` / ``EMIT ON UPDATE`` of a materialized view."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class ExplainStatement(exp.Expression):
    """``EXPLAIN <statement>``; ``this`` is the explained statement's tree."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class TokenPositionError(TokenError):
    """A `TokenError` that knows the 1-based line and column of the bad token."""

    def __init__(self, message: str, line: int, column: int, start: int) -> None:
        super().__init__(message, start=start, end=start + 1)
        self.line = line
        self.column = column


def _as_written(name: str) -> Callable[[list[exp.Expr]], exp.Expr]:
    """Read the function ``name`` as a plain call, as written."""
    return lambda args: exp.Anonymous(this=name, expressions=args)


def _show(kind: str) -> Callable[[Laminar.Parser], exp.Show]:
    return lambda self: self.expression(exp.Show(this=kind))


class Laminar(RisingWave):
    """RisingWave's dialect with SHOW, EXPLAIN and EMIT (registered as ``"laminar"``)."""

    class Tokenizer(RisingWave.Tokenizer):
        KEYWORDS = {
            **{k: v for k, v in RisingWave.Tokenizer.KEYWORDS.items()
               # session(ts, gap) is a window function here, not SET SESSION's keyword.
               if k != "SESSION"},
            # MySQL's trick: EXPLAIN shares DESCRIBE's token; the parser tells them apart.
            "EXPLAIN": TokenType.DESCRIBE,
        }
        # SHOW is parsed (below), not swallowed whole as a Command.
        COMMANDS = RisingWave.Tokenizer.COMMANDS - {TokenType.SHOW}

        def tokenize(self, sql: str) -> list[Token]:
            try:
                return super().tokenize(sql)
            except TokenError as error:
                # sqlglot only quotes ±50 characters of context; the tokenizer core still
                # holds the offset where the bad token starts, which gives line and column.
                start = getattr(self._core, "_start", None)
                if not isinstance(start, int) or not 0 <= start < len(sql):
                    raise
                line = sql.count("\n", 0, start) + 1
                column = start - (sql.rfind("\n", 0, start) + 1) + 1
                snippet = sql[start : start + 20].split("\n")[0]
                raise TokenPositionError(
                    f"cannot read the SQL text starting at {snippet!r} "
                    "(an unterminated quote or comment?)",
                    line,
                    column,
                    start,
                ) from error

    class Parser(_RisingWaveParser):
        FUNCTIONS = {
            **_RisingWaveParser.FUNCTIONS,
            # A view's functions mean what Polars SQL says: sqlglot reads LOG10(x) as
            # LOG(10, x), PostgreSQL's order (base first), but Polars' LOG takes the
            # base second, so these stay as written.
            # BIT_AND(a, b) is a bitwise AND of two values in Polars SQL, not an aggregate.
            **{name: _as_written(name) for name in ("LOG10", "LOG2", "BIT_AND", "BIT_OR",
                                                    "BIT_XOR")},
        }
        STATEMENT_PARSERS = {
            **_RisingWaveParser.STATEMENT_PARSERS,
            TokenType.DESCRIBE: lambda self: self._parse_describe_or_explain(),
            TokenType.SHOW: lambda self: self._parse_show(),
        }

        SHOW_PARSERS = {kind: _show(kind) for kind in _SHOW_KINDS}
        # The base class builds its trie from its own (empty) SHOW_PARSERS.
        SHOW_TRIE = new_trie(kind.split(" ") for kind in SHOW_PARSERS)

        def _parse_describe_or_explain(self) -> exp.Expr:
            if self._prev.text.upper() != "EXPLAIN":
                return self._parse_describe()
            statement = self._parse_statement()
            if statement is None:
                self.raise_error("EXPLAIN needs a statement to explain")
            return self.expression(ExplainStatement(this=statement))

        def _parse_show(self) -> exp.Expr | None:
            parser = self._find_parser(self.SHOW_PARSERS, self.SHOW_TRIE)
            if parser is None:
                self.raise_error(f"expected {', '.join(_SHOW_KINDS)} after SHOW")
                return None
            return parser(self)

        def _at_emit_clause(self) -> bool:
            if not self._curr or self._curr.text.upper() != "EMIT":
                return False
            index = self._index
            self._advance()
            found = any(self._match_text_seq(*words, advance=False) for words in _EMIT_MODES)
            self._retreat(index)
            return found

        def _parse_emit(self) -> EmitProperty | None:
            if not self._at_emit_clause():
                return None
            self._advance()  # EMIT
            for words in _EMIT_MODES:
                if self._match_text_seq(*words):
                    return self.expression(EmitProperty(this=exp.var(" ".join(words))))
            return None  # unreachable: _at_emit_clause matched one of the modes

        # `t EMIT` would otherwise read as a table or column alias named "emit", as
        # sqlglot itself guards START WITH and WINDOW.
        def _parse_table_alias(
            self, alias_tokens: Collection[TokenType] | None = None
        ) -> exp.TableAlias | None:
            if self._at_emit_clause():
                return None
            return super()._parse_table_alias(alias_tokens)

        def _parse_alias(self, this: exp.Expr | None, explicit: bool = False) -> exp.Expr | None:
            if self._at_emit_clause():
                return this
            return super()._parse_alias(this, explicit)

        def _parse_ddl_select(self) -> exp.Expr | None:
            query = super()._parse_ddl_select()
            if query is not None and self._at_emit_clause():
                # _parse_create would see EMIT as a leftover token and give up; the
                # clause rides on the query's meta until _parse_create moves it.
                emit_token = self._curr
                query.meta["laminar_emit"] = (emit_token, self._parse_emit())
            return query

        def _parse_create(self) -> exp.Create | exp.Command:
            create = super()._parse_create()
            if not isinstance(create, exp.Create):
                return create
            query = create.args.get("expression")
            pending = query.meta.pop("laminar_emit", None) if isinstance(query, exp.Expr) else None
            if pending is None:
                return create
            emit_token, emit = pending
            properties = create.args.get("properties")
            materialized = properties is not None and properties.find(exp.MaterializedProperty)
            if create.kind != "VIEW" or not materialized:
                self.raise_error("EMIT is only allowed in CREATE MATERIALIZED VIEW", emit_token)
            if properties is None:
                create.set("properties", exp.Properties(expressions=[emit]))
            else:
                properties.append("expressions", emit)
            return create

        # sqlglot gives up on a statement in these two places, keeping it as opaque
        # text (exp.Command) and logging a warning: refuse instead, at the bad token.
        def _parse_as_command(self, start: Token) -> exp.Command:
            token = self._curr or start
            first = self._tokens[0] if self._tokens else token
            if token is not first and first.text.upper() in STATEMENT_WORDS:
                self.raise_error(self._unexpected(token), token)  # a statement we run
            self.raise_error(
                f"unsupported syntax at {token.text!r}; supported: {SUPPORTED_STATEMENTS}", token
            )
            return exp.Command(this=start.text)  # only with a lenient error_level

        def raise_error(self, message: str, token: Token | None = None) -> None:
            if message == _UNEXPECTED:  # tokens left over after a whole statement
                message = self._unexpected(token or self._curr)
            if token is None:
                super().raise_error(message)
            else:
                super().raise_error(message, token)

        def _unexpected(self, token: Token | None) -> str:
            """Name the token nothing expects and the word before it; if that word
            (else the token, else the statement's first word) is one typo away from
            a keyword, suggest the keyword."""
            tokens = self._tokens
            if token is None:
                return "unexpected end of the statement"
            at = next((i for i, t in enumerate(tokens) if t is token), 0)
            before = tokens[at - 1] if at > 0 else None
            message = f"unexpected {token.text!r}"
            if before is not None:
                message += f" after {before.text!r}"
            for word, named in ((before, True), (token, True), (tokens[0], False)):
                if word is None or word.token_type != TokenType.VAR:
                    continue
                keywords = _KEYWORDS if named else STATEMENT_WORDS
                keyword = near_miss(word.text, keywords)
                if keyword is not None:
                    instead = "" if named else f" instead of {word.text!r}"
                    return f"{message}; did you mean {keyword}{instead}?"
            return message

        def _warn_unsupported(self) -> None:
            first = self._tokens[0] if self._tokens else None
            self.raise_error(f"unsupported statement; supported: {SUPPORTED_STATEMENTS}", first)

    class Generator(_RisingWaveGenerator):
        TRANSFORMS = {
            **_RisingWaveGenerator.TRANSFORMS,
            EmitProperty: lambda self, e: f"EMIT {self.sql(e, 'this')}",
            ExplainStatement: lambda self, e: f"EXPLAIN {self.sql(e, 'this')}",
            # The base generator only knows MySQL's and Snowflake's SHOW variants.
            exp.Show: lambda self, e: f"SHOW {e.name}",
            # PostgreSQL's generator writes TRY_CAST as a (strict) CAST; a view's
            # text must say what it does.
            exp.TryCast: lambda self, e: self.cast_sql(e, safe_prefix="TRY_"),
        }
        PROPERTIES_LOCATION = {
            **_RisingWaveGenerator.PROPERTIES_LOCATION,
            EmitProperty: exp.Properties.Location.POST_EXPRESSION,
        }
