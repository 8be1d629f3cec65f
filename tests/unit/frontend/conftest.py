"""Fixtures for the Polars front end: a trades relation, its placeholder, real rows."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import polars as pl
import pytest

from laminar_polars.frontend import stream
from laminar_polars.plan import Scan

TRADES_SCHEMA = pl.Schema({"symbol": pl.String, "price": pl.Float64, "qty": pl.Int64,
                           "ts": pl.Datetime("us")})
TRADES = Scan("trades", TRADES_SCHEMA, "ts")


def make_trades(n: int = 400, seed: int = 0) -> pl.DataFrame:
    """Rows in arrival order, event times jittered (not sorted), some nulls."""
    rng = np.random.default_rng(seed)
    base = datetime(2024, 1, 1, 9, 30)
    seconds = np.sort(rng.integers(0, 900, n)) + rng.integers(-20, 20, n)
    price = rng.normal(100, 5, n).round(2)
    qty = rng.integers(1, 50, n)
    return pl.DataFrame({
        "symbol": rng.choice(["AAPL", "msft", " goog ", "Tsla"], n),
        "price": [None if i % 17 == 0 else float(p) for i, p in enumerate(price)],
        "qty": [None if i % 23 == 0 else int(q) for i, q in enumerate(qty)],
        "ts": [base + timedelta(seconds=int(s), microseconds=int(i)) for i, s in
               enumerate(seconds)],
    }, schema=TRADES_SCHEMA)


@pytest.fixture
def trades() -> pl.LazyFrame:
    return stream(TRADES)


@pytest.fixture
def relation():
    relations = {"trades": TRADES}
    return relations.__getitem__


@pytest.fixture(params=[0, 1])
def data(request) -> pl.DataFrame:
    return make_trades(seed=request.param)
