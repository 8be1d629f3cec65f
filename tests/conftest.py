"""Shared fixtures: a database per test, and a helper reading a whole stream."""

from __future__ import annotations

import zlib

import polars as pl
import pytest

import laminar_polars as lp
from laminar_polars.engine import grid

TRADES_DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
)"""


# Every test runs with one of several absorb thresholds, chosen from its id, so
# across the suite rows reach a closing window both ways: folded in from the
# pending buffer, and already merged into the state.
ABSORB_THRESHOLDS = (1, 2, 5, 64, grid.ABSORB_ROWS)


@pytest.fixture(autouse=True)
def absorb_threshold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    rows = ABSORB_THRESHOLDS[zlib.crc32(request.node.nodeid.encode()) % len(ABSORB_THRESHOLDS)]
    monkeypatch.setattr(grid, "ABSORB_ROWS", rows)
    return rows


@pytest.fixture
def db():
    database = lp.open()
    yield database
    database.stop()


def read_all(subscription: lp.Subscription, timeout: float = 30.0) -> pl.DataFrame:
    """Every frame until the subscription ends (the database stopped)."""
    frames = []
    while True:
        try:
            frames.append(subscription.recv(timeout=timeout))
        except lp.Closed:
            break
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()
