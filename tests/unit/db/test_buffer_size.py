"""A buffer_size too large to allocate sanely is refused before any memory is touched.

The native ring touches every slot up front, so an absurd size would get the
process killed rather than raise. These tests pretend the machine is small
(``physical_memory``) instead of allocating anything large.
"""

from __future__ import annotations

import polars as pl
import pytest

import laminar_polars as lp
from laminar_polars import config

MiB = 1 << 20
TRADES = """CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT,
    ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND)"""


@pytest.fixture
def small_machine(monkeypatch):
    """A machine with 64 MiB of memory: a ring may take 32 MiB."""
    monkeypatch.setattr(config, "physical_memory", lambda: 64 * MiB, raising=False)


@pytest.mark.parametrize("size", [2**32, 2**40])
def test_buffer_size_above_2_31_is_refused_outright(size):
    with pytest.raises(lp.ConfigError, match=rf"buffer_size: at most 2\*\*31 .*got {size}"):
        lp.Config(buffer_size=size).validate()
    with pytest.raises(lp.ConfigError, match=r"buffer_size: at most 2\*\*31"):
        lp.SourceConfig(buffer_size=size).validate()


def test_create_source_ring_larger_than_half_the_memory(db, small_machine):
    # per slot: 8 bookkeeping + VARCHAR 16+1 + 3 x (8+1) = 52 bytes; plus a string
    # arena of 64 bytes a slot: 2**20 rows take 52 MiB + 64 MiB
    with pytest.raises(lp.ConfigError) as info:
        db.execute(TRADES + " WITH (buffer_size = 1048576)")
    assert str(info.value) == (
        "a ring of 1048576 rows of source 'trades' would take 116.0 MiB; this machine has "
        "64.0 MiB of memory and a ring may take at most half; use a smaller buffer_size")
    assert db.execute("SHOW SOURCES").height == 0
    db.execute(TRADES + " WITH (buffer_size = 65536)")  # 7.3 MiB: fine
    assert db.source("trades").capacity == 65536


def test_db_create_source_is_checked_too(db, small_machine):
    with pytest.raises(lp.ConfigError, match=r"source 'q' would take 352\.0 MiB"):
        db.create_source("q", {"a": pl.Float64, "b": pl.Int32},
                         config=lp.SourceConfig(buffer_size=2**24))  # 8+9+5 = 22 bytes a row


def test_the_databases_default_buffer_size_is_checked_per_source(small_machine):
    db = lp.open(lp.Config(buffer_size=2**21))  # some source of this size fits: accepted
    with pytest.raises(lp.ConfigError, match=r"2097152 rows of source 'trades' would take"):
        db.execute(TRADES)
    db.execute("CREATE SOURCE flags (f BOOLEAN)")  # 10 bytes a row: 20 MiB fits
    db.stop()


def test_open_refuses_a_default_no_source_could_have(small_machine):
    with pytest.raises(lp.ConfigError) as info:
        lp.open(lp.Config(buffer_size=2**23))
    assert str(info.value) == (
        "buffer_size: a ring of 8388608 rows would take at least 80.0 MiB (10 bytes a row, "
        "for a single BOOLEAN column); this machine has 64.0 MiB of memory and a ring may "
        "take at most half; use a smaller buffer_size")


def test_every_column_type_counts_its_width(db, monkeypatch):
    # a 1 KiB machine: a ring may take 512 bytes
    monkeypatch.setattr(config, "physical_memory", lambda: 1 << 10, raising=False)
    columns = ("a DOUBLE, b BIGINT, c TIMESTAMP, d REAL, e INTEGER, f DATE, g SMALLINT, "
               "h BOOLEAN")
    # 8 + 3 x (8+1) + 3 x (4+1) + (2+1) + (1+1) = 55 bytes a slot, no string arena
    with pytest.raises(lp.ConfigError, match=r"a ring of 16 rows of source 's' would take 880 B"):
        db.execute(f"CREATE SOURCE s ({columns}) WITH (buffer_size = 16)")
    db.execute(f"CREATE SOURCE s ({columns}) WITH (buffer_size = 8)")  # 440 B
