"""laminar_polars: an embedded streaming SQL engine for Python.

Push rows or Arrow batches into sources, read results from sinks as
``polars.DataFrame``s. See README.md for a tour.

>>> import laminar_polars as lp
>>> db = lp.open()
>>> db.execute("CREATE SOURCE t (x BIGINT)")
>>> db.execute("SHOW SOURCES")["name"].to_list()
['t']
"""

from __future__ import annotations

from laminar_polars.config import (
    Backpressure,
    Config,
    SourceConfig,
    WaitStrategy,
    WalMode,
    Watermark,
    parse_duration,
)
from laminar_polars.db import LaminarDB, open
from laminar_polars.errors import (
    CatalogError,
    Closed,
    ConfigError,
    EngineError,
    Full,
    Lagged,
    LaminarError,
    PlanError,
    RecoveryError,
    RecoveryWarning,
    SchemaError,
    SqlError,
    Timeout,
)
from laminar_polars.io import Sink, Source, Subscription

__version__ = "0.1.0"

__all__ = [
    # db
    "LaminarDB",
    "open",
    # config
    "Backpressure",
    "Config",
    "SourceConfig",
    "WaitStrategy",
    "WalMode",
    "Watermark",
    "parse_duration",
    # errors
    "CatalogError",
    "Closed",
    "ConfigError",
    "EngineError",
    "Full",
    "Lagged",
    "LaminarError",
    "PlanError",
    "RecoveryError",
    "RecoveryWarning",
    "SchemaError",
    "SqlError",
    "Timeout",
    # io
    "Sink",
    "Source",
    "Subscription",
]
