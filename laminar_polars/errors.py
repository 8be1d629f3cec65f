"""The exceptions laminar_polars raises (docs/operations.md, "Errors").

Every error inherits :class:`LaminarError`, and also the built-in exception a
Python user would reach for first (``ValueError`` for bad configuration,
``TypeError`` for a row that does not fit its schema, ``TimeoutError`` for a
receive that timed out), so ``except ValueError`` keeps working.

Examples
--------
>>> import laminar_polars as lp
>>> issubclass(lp.SchemaError, TypeError) and issubclass(lp.SchemaError, lp.LaminarError)
True
"""

from __future__ import annotations

__all__ = [
    "LaminarError",
    "ConfigError",
    "SqlError",
    "CatalogError",
    "PlanError",
    "SchemaError",
    "Full",
    "Timeout",
    "Closed",
    "Lagged",
    "EngineError",
    "RecoveryError",
    "describe_failure",
]


class LaminarError(Exception):
    """Base class of every laminar_polars error."""


class ConfigError(LaminarError, ValueError):
    """A `Config`, `SourceConfig` or `WITH (...)` option is invalid."""


class SqlError(LaminarError, ValueError):
    """SQL text could not be parsed or is not supported.

    ``line`` and ``column`` (1-based) point at the offending token when known.
    """

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        self.line = line
        self.column = column
        if line is not None:
            message = f"{message} (line {line}, column {column})"
        super().__init__(message)


class CatalogError(LaminarError, KeyError):
    """An object name is unknown, already taken, or still in use."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class PlanError(LaminarError, ValueError):
    """A query the engine cannot maintain incrementally."""


class SchemaError(LaminarError, TypeError):
    """A row or Arrow batch does not fit the source's schema."""


class Full(LaminarError):
    """A source with ``backpressure='reject'`` has no room for the row."""


class Timeout(LaminarError, TimeoutError):
    """A blocking receive ran out of time."""


class Closed(LaminarError):
    """The source, sink, subscription or database is closed or stopped."""


class Lagged(LaminarError):
    """A subscription fell more than ``max_lag_rows`` behind: its oldest frames
    were dropped (for it alone). ``missed`` is how many rows it lost; reading
    again goes on with what it still holds."""

    def __init__(self, message: str, missed: int) -> None:
        super().__init__(message)
        self.missed = missed


class EngineError(LaminarError, RuntimeError):
    """The engine failed at run time (e.g. a view's expression failed on a row);
    ``__cause__`` is the original error. Every subscription ends with it."""


class RecoveryError(LaminarError):
    """Durable state exists in ``data_dir`` but none of it can be used."""


class RecoveryWarning(UserWarning):
    """Recovery used less than everything on disk: a corrupt checkpoint, a cut
    log, a view whose definition changed (it starts empty)."""


def describe_failure(error: BaseException) -> str:
    """How messages name an engine failure: its type and the first line of its
    message (Polars' messages can run to many lines).

    >>> describe_failure(ValueError("bad cast\\nhint: ..."))
    'ValueError: bad cast'
    """
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
