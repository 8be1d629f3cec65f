"""Shared fixtures: a database per test, and a helper reading a whole stream."""

from __future__ import annotations

import warnings
import zlib

import polars as pl
import pytest

import laminar_polars as lp
from laminar_polars.engine.ops import grid

# When a hypothesis test fails, its pytest plugin imports libcst to suggest a
# patch, and libcst's import raises a DeprecationWarning (mypy_extensions) that
# ``filterwarnings = error`` turns into a pytest INTERNALERROR ending the whole
# session. Importing it here once, with that warning ignored, avoids it.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    try:
        import hypothesis.extra._patching  # noqa: F401
    except ImportError:  # libcst not installed: the plugin skips the patch
        pass

TRADES_DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
)"""


# Every test runs with one of several (absorb, cap) thresholds for pending rows,
# chosen from its id, so across the suite rows reach a closing window every way:
# folded in from the pending buffer, merged just before the close, merged by
# count, and merged at the cap regardless of a close.
ABSORB_THRESHOLDS = ((1, 1), (2, grid.PENDING_CAP), (5, 3), (64, grid.PENDING_CAP),
                     (grid.ABSORB_ROWS, 7), (grid.ABSORB_ROWS, grid.PENDING_CAP))


@pytest.fixture(autouse=True)
def absorb_threshold(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> tuple:
    pick = zlib.crc32(request.node.nodeid.encode()) % len(ABSORB_THRESHOLDS)
    rows, cap = ABSORB_THRESHOLDS[pick]
    monkeypatch.setattr(grid, "ABSORB_ROWS", rows)
    monkeypatch.setattr(grid, "PENDING_CAP", cap)
    return rows, cap


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
