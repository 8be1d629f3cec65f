"""Join and UNION ALL plan nodes: each one's columns are its Polars call's, and
the validation pass refuses what cannot be maintained, whoever built the plan."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from laminar_polars.errors import PlanError
from laminar_polars.plan import (
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    KeyedAgg,
    LookupJoin,
    RowMap,
    Scan,
    Step,
    Union,
    explain,
    inputs_of,
    validate,
)

LEFT = Scan("l", pl.Schema({"k": pl.String, "x": pl.Float64, "ts": pl.Datetime("us")}), "ts")
RIGHT = Scan("r", pl.Schema({"k": pl.String, "y": pl.Float64, "ts": pl.Datetime("us")}), "ts")
PLAIN = Scan("p", pl.Schema({"k": pl.String, "z": pl.Int64}))
TABLE = Scan("fx", pl.Schema({"k": pl.String, "rate": pl.Float64}), table=True)
UPSERTS = Scan("u", pl.Schema({"k": pl.String, "n": pl.UInt32}), appends_only=False)
T0 = dt.datetime(2024, 1, 1)


def rows(schema: pl.Schema, *values: tuple) -> pl.DataFrame:
    return pl.DataFrame([list(v) for v in values], schema=schema, orient="row")


def test_each_node_is_its_polars_call():
    left = rows(LEFT.schema, ("a", 1.0, T0), ("b", 2.0, T0))
    right = rows(RIGHT.schema, ("a", 5.0, T0))
    nodes = [AsofJoin(LEFT, RIGHT, "ts", "ts", ("k",), ("k",)),
             AsofJoin(LEFT, RIGHT, "ts", "ts", ("k",), ("k",), how="inner", coalesce=False),
             IntervalJoin(LEFT, RIGHT, "ts", "ts", -10, 10, ("k",), ("k",)),
             EquiJoin(LEFT, RIGHT, ("k", "ts"), ("k", "ts"), how="left"),
             EquiJoin(LEFT, RIGHT, ("k",), ("k",), coalesce=False, suffix=":r")]
    for node in nodes:
        out = node.apply(left.lazy(), right.lazy()).collect()
        assert out.schema == node.schema, explain(node)
    assert nodes[0].apply(left.lazy(), right.lazy()).collect().height == 2
    assert nodes[1].apply(left.lazy(), right.lazy()).collect().height == 1
    lookup = LookupJoin(LEFT, TABLE, None, ("k",), ("k",), how="left")
    assert list(lookup.schema) == ["k", "x", "ts", "rate"] and lookup.time_column == "ts"
    assert inputs_of(lookup) == ["l", "fx"]


def test_time_columns_of_the_output():
    assert AsofJoin(LEFT, RIGHT, "ts", "ts").time_column == "ts"
    assert EquiJoin(LEFT, RIGHT, ("ts",), ("ts",)).windowed
    unbounded = EquiJoin(LEFT, RIGHT, ("k",), ("k",))
    assert not unbounded.windowed and unbounded.time_column is None
    assert EquiJoin(LEFT, RIGHT, ("k",), ("k",), state_ttl_us=5).time_column == "ts"
    renamed = RowMap(RIGHT, (Step("select", (pl.col("k"), pl.col("y"),
                                             pl.col("ts").alias("t2"))),))
    assert Union((LEFT, RowMap(RIGHT, (Step("select", (pl.col("k"), pl.col("y").alias("x"),
                                                       pl.col("ts"))),)))).time_column == "ts"
    assert renamed.time_column == "t2"


@pytest.mark.parametrize(("node", "message"), [
    (AsofJoin(LEFT, UPSERTS, "ts", "ts"), "its rows are updated in place"),
    (AsofJoin(LEFT, PLAIN, "ts", "ts"), "needs event time on both inputs"),
    (AsofJoin(LEFT, RIGHT, "x", "ts"), "that of 'l' is 'ts', not 'x'"),
    (AsofJoin(LEFT, RIGHT, "ts", "ts", tolerance_us=-1), "must not be negative"),
    (AsofJoin(LEFT, RIGHT, "ts", "ts", ("k",), ()), "as many right 'by' columns"),
    (IntervalJoin(LEFT, RIGHT, "ts", "ts", 5, 5, lower_strict=True), "bounds hold no time"),
    (IntervalJoin(LEFT, RIGHT, "ts", "ts", 0, 5, residual=(pl.col("x") > 1,), how="left"),
     "a LEFT interval join takes only key equalities and its time bound"),
    (EquiJoin(LEFT, RIGHT, ("k",), ("k",), how="left"), "LEFT join of two streams on keys"),
    (EquiJoin(LEFT, RIGHT, ("ts",), ("ts",), state_ttl_us=5), "this window join"),
    (EquiJoin(LEFT, PLAIN, ("k",), ("k",), state_ttl_us=5), "'p' has none"),
    (EquiJoin(LEFT, RIGHT, (), ()), "at least one"),
    (LookupJoin(LEFT, TABLE, None, (), ()), "as many table keys"),
    (RowMap(TABLE, (Step("filter", (pl.col("rate") > 1,)),)), "holds static rows"),
    (KeyedAgg(TABLE, (), (), ()), "holds static rows"),
    (Union((LEFT, RIGHT)), "UNION ALL needs inputs with the same columns"),
    (Union((LEFT,)), "at least two inputs"),
    (Union((UPSERTS, UPSERTS)), "its rows are updated in place"),
])
def test_refused(node, message):
    with pytest.raises(PlanError, match=message):
        validate(node)


def test_explain():
    node = IntervalJoin(LEFT, RIGHT, "ts", "ts", -5, 7, ("k",), ("k",), upper_strict=True)
    assert explain(node).splitlines()[0] == (
        "IntervalJoin inner keys ['k']=['k'] ts-5us <= ts < ts+7us")
    assert explain(Union((LEFT, LEFT))).splitlines()[0] == "Union all"
    assert explain(LookupJoin(LEFT, TABLE, None, ("k",), ("k",))).startswith(
        "LookupJoin inner table=fx on ['k']=['k']")
