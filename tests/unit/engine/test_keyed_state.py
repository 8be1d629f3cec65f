"""`KeyedState` against a dict: random upserts and finds, with null and
multi-column keys, compactions, and hashes forced to collide."""

from __future__ import annotations

import random

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from laminar_polars.engine import keyed_state
from laminar_polars.engine.keyed_state import HASH, KeyedState

SCHEMA = {"a": pl.String, "b": pl.Int64, "v": pl.Int64}


def _frame(rows: dict) -> pl.DataFrame:
    return pl.DataFrame([(a, b, v) for (a, b), v in rows.items()], schema=SCHEMA, orient="row")


def _as_dict(frame: pl.DataFrame | None) -> dict:
    if frame is None:
        return {}
    frame = frame.drop(HASH, strict=False)
    assert frame.select("a", "b").is_unique().all(), "a key is stored twice"
    return {(a, b): v for a, b, v in frame.select("a", "b", "v").rows()}


def _run(ops: list[tuple[str, dict]], hot_limit: int) -> None:
    store = KeyedState(["a", "b"], hot_limit=hot_limit)
    model: dict = {}
    for op, rows in ops:
        if op == "upsert":
            store.upsert(_frame(rows))
            model.update(rows)
        elif op == "find":
            probe = _frame(rows).select("a", "b")
            want = {k: model[k] for k in rows if k in model}
            assert _as_dict(store.find(probe)) == want
        else:
            store.remove(_frame(rows).select("a", "b"))
            for key in rows:
                model.pop(key, None)
        assert _as_dict(store.rows()) == model
        assert len(store) == len(model)
    restored = KeyedState(["a", "b"], hot_limit=hot_limit)
    restored.restore(store.rows())
    assert _as_dict(restored.rows()) == model


KEYS = st.tuples(st.sampled_from(["x", "y", None]), st.integers(-3, 3) | st.none())
OPS = st.lists(st.tuples(st.sampled_from(["upsert", "upsert", "find", "remove"]),
                         st.dictionaries(KEYS, st.integers(0, 100), max_size=6)),
               max_size=30)


@settings(max_examples=150, deadline=None)
@given(ops=OPS, hot_limit=st.sampled_from([1, 2, 5, 1 << 15]))
def test_keyed_state_is_a_dict(ops, hot_limit):
    _run(ops, hot_limit)


@pytest.fixture
def colliding(monkeypatch):
    """A hash with four values: most keys share their hash with others."""
    def weak(keys):
        return (pl.struct([pl.col(k) for k in keys]).hash() % 4).alias(HASH)

    monkeypatch.setattr(keyed_state, "key_hash", weak)


# The fixture patches a module function once; every example may share it.
@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=OPS, hot_limit=st.sampled_from([1, 3]))
def test_keyed_state_with_colliding_hashes_is_a_dict(colliding, ops, hot_limit):
    assert KeyedState(["a"]).hashed(pl.DataFrame({"a": ["p", "q", "r", "s", "t"]}))[
        HASH].max() < 4, "the weak hash is not in use"
    _run(ops, hot_limit)


def test_many_keys_through_compactions():
    rnd = random.Random(7)
    store = KeyedState(["a", "b"], hot_limit=500)
    model: dict = {}
    for _ in range(200):
        rows = {(rnd.choice("pqrs"), rnd.randrange(2000)): rnd.randrange(10**6)
                for _ in range(rnd.randrange(1, 60))}
        found = _as_dict(store.find(_frame(rows).select("a", "b")))
        assert found == {k: model[k] for k in rows if k in model}
        store.upsert(_frame(rows))
        model.update(rows)
    assert store.cold is not None and store.cold.height > 1000, "never compacted"
    assert store.cold[HASH].is_sorted()
    assert _as_dict(store.rows()) == model


def test_parts_written_with_columns_in_another_order_are_found_together():
    """A store's rows may come with their columns in another order each time
    (the first batch's partials, then merged rows): finding keys in both parts
    stacks them all the same (it raised a ShapeError)."""
    store = KeyedState(["a", "b"], hot_limit=1)
    store.upsert(pl.DataFrame({"a": ["x", "y"], "b": [1, 2], "v": [10, 20]}))  # compacted
    store.upsert(pl.DataFrame({"v": [30], "b": [3], "a": ["z"]}))
    found = store.find(pl.DataFrame({"a": ["x", "z"], "b": [1, 3]}))
    assert _as_dict(found) == {("x", 1): 10, ("z", 3): 30}
