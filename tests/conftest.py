"""Shared fixtures: a database per test, and a helper reading a whole stream."""

from __future__ import annotations

import polars as pl
import pytest

import laminar_polars as lp

TRADES_DDL = """
CREATE SOURCE trades (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND
)"""


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
