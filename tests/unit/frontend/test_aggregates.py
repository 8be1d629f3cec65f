"""Aggregates: plan structure, Polars' output schema, and — through a small batch
evaluator of the plan's own semantics (`WindowSpec` with origin='first_row',
`Agg`) — the same rows as Polars' group_by_dynamic / group_by on the same data."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    WindowAgg,
    WindowSpec,
    apply_steps,
)

p, q = pl.col("price"), pl.col("qty")

OHLC = (p.first().alias("open"), p.max().alias("high"), p.min().alias("low"),
        p.last().alias("close"), q.sum().alias("volume"), pl.len().alias("trades"))


# -- a batch evaluator of the logical plan ------------------------------------------

def evaluate(node: Node, data: pl.DataFrame) -> pl.DataFrame:
    """The plan run in batch over ``data`` (rows in arrival order)."""
    if isinstance(node, Scan):
        return data
    if isinstance(node, RowMap):
        return apply_steps(evaluate(node.input, data).lazy(), node.steps).collect()
    rows = evaluate(node.input, data).with_row_index("__arrival")
    if isinstance(node, WindowAgg):
        rows = _assign_windows(rows, node.keys, node.input_time_column, node.window)
        keys = [*node.keys, WINDOW_START, WINDOW_END]
        time = node.input_time_column
    else:
        keys, time = list(node.keys), None
    aggs = []
    for agg in node.aggs:
        expr = agg.expr
        if agg.func in ("first", "last"):
            by = ["__arrival"] if agg.order == "arrival" else [time, "__arrival"]
            expr = expr.sort_by(by)
        aggs.append({"count_star": pl.len(), "count": (expr.count() if expr is not None
                                                      else None),
                     "sum": expr.sum() if expr is not None else None,
                     "min": expr.min() if expr is not None else None,
                     "max": expr.max() if expr is not None else None,
                     "mean": expr.mean() if expr is not None else None,
                     "first": expr.first() if expr is not None else None,
                     "last": expr.last() if expr is not None else None,
                     "n_unique": expr.n_unique() if expr is not None else None,
                     }[agg.func].alias(agg.name))
    internal = rows.group_by(keys).agg(aggs)
    if node.having is not None:
        internal = internal.filter(node.having)
    return internal.select(node.output)


def _windowed(node: Node) -> bool:
    return isinstance(node, WindowAgg) or any(_windowed(child) for child in node.inputs)


def _assign_windows(rows: pl.DataFrame, keys, time: str, spec: WindowSpec) -> pl.DataFrame:
    """Each row once per window holding it; per key, windows start at
    truncate(earliest, slide) + offset, stepped back by slide to the earliest row."""
    us = pl.col(time).dt.epoch("us")
    first = us.min().over(keys) if keys else us.min()
    base = first - first % spec.slide_us + spec.offset_us
    start0 = base - ((base - first).clip(lower_bound=0) + spec.slide_us - 1) \
        // spec.slide_us * spec.slide_us
    last_grid = us - (us - spec.offset_us) % spec.slide_us
    count = -(-spec.size_us // spec.slide_us) + 1
    return (rows.with_columns(__s=pl.int_ranges(last_grid - (count - 1) * spec.slide_us,
                                                last_grid + 1, spec.slide_us),
                              __start0=start0, __us=us)
            .explode("__s")
            .filter((pl.col("__s") >= pl.col("__start0"))
                    & (pl.col("__s") <= pl.col("__us"))
                    & (pl.col("__us") < pl.col("__s") + spec.size_us))
            .with_columns(pl.col("__s").cast(pl.Datetime("us")).alias(WINDOW_START),
                          (pl.col("__s") + spec.size_us).cast(pl.Datetime("us"))
                          .alias(WINDOW_END))
            .drop("__s", "__start0", "__us"))


def polars_batch(frame_of, data: pl.DataFrame, by_time: bool) -> pl.DataFrame:
    """Polars' own answer on the rows in arrival order, or sorted by time (stable) for
    group_by_dynamic, which needs its index column sorted."""
    if by_time:
        data = data.sort("ts", maintain_order=True)
    return frame_of(data.lazy()).collect()


def assert_same_rows(got: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert got.schema == expected.schema
    order = [c for c, t in expected.schema.items() if not t.is_nested()]
    assert_frame_equal(got.sort(order, nulls_last=True), expected.sort(order, nulls_last=True),
                       check_exact=False)


def check(frame_of, relation, data, emit=None, oracle=None) -> Node:
    """Plan the frame; its schema and batch result must equal Polars' (``oracle`` if
    given, a frame function equivalent in batch)."""
    frame = frame_of(stream(relation("trades")))
    plan = plan_lazyframe(frame, relation, emit=emit)
    expected = polars_batch(oracle or frame_of, data, by_time=_windowed(plan))
    assert plan.schema == expected.schema == frame.collect_schema()
    assert_same_rows(evaluate(plan, data), expected)
    return plan


# -- group_by_dynamic ------------------------------------------------------------------

def test_ohlc_bars(relation, data):
    plan = check(lambda f: f.group_by_dynamic("ts", every="1m", group_by="symbol").agg(*OHLC),
                 relation, data)
    assert isinstance(plan, WindowAgg)
    assert plan.input is relation("trades")
    assert plan.keys == ("symbol",)
    assert plan.window == WindowSpec("tumble", 60_000_000, 60_000_000, 0, "first_row")
    assert [(a.func, a.order, a.null_sum) for a in plan.aggs] == [
        ("first", "event", "zero"), ("max", "event", "zero"), ("min", "event", "zero"),
        ("last", "event", "zero"), ("sum", "event", "zero"), ("count_star", "event", "zero")]
    assert plan.emit == "on_window_close"
    assert (plan.time_output, plan.time_output_is) == ("ts", "start")
    assert plan.time_column == "ts"
    assert list(plan.schema) == ["symbol", "ts", "open", "high", "low", "close", "volume",
                                 "trades"]


WINDOWS = {
    "tumble_no_key": (dict(every="30s"), WindowSpec("tumble", 30_000_000)),
    "hop": (dict(every="1m", period="3m"), WindowSpec("hop", 180_000_000, 60_000_000)),
    "hop_gaps": (dict(every="2m", period="1m"), WindowSpec("hop", 60_000_000, 120_000_000)),
    "offset": (dict(every="1m", offset="10s"), WindowSpec("tumble", 60_000_000, 0, 10_000_000)),
    "negative_offset": (dict(every="1m", offset="-10s"),
                        WindowSpec("tumble", 60_000_000, 0, -10_000_000)),
    "offset_beyond_every": (dict(every="1m", offset="70s"),
                            WindowSpec("tumble", 60_000_000, 0, 70_000_000)),
    "hop_offset": (dict(every="1m", period="150s", offset="25s"),
                   WindowSpec("hop", 150_000_000, 60_000_000, 25_000_000)),
    "days": (dict(every="1d", period="2d"), WindowSpec("hop", 172_800_000_000,
                                                        86_400_000_000)),
    "sub_second": (dict(every="250ms"), WindowSpec("tumble", 250_000)),
}


@pytest.mark.parametrize("name", sorted(WINDOWS))
def test_windows(name, relation, data):
    kwargs, spec = WINDOWS[name]
    group_by = None if name == "tumble_no_key" else "symbol"
    plan = check(lambda f: f.group_by_dynamic("ts", group_by=group_by, **kwargs)
                 .agg(pl.len(), q.sum()), relation, data)
    assert plan.window == WindowSpec(spec.kind, spec.size_us, spec.slide_us, spec.offset_us,
                                     "first_row")


@pytest.mark.parametrize("label", ["left", "right"])
def test_boundaries_and_label(label, relation, data):
    plan = check(lambda f: f.group_by_dynamic("ts", every="1m", period="2m", group_by="symbol",
                                              include_boundaries=True, label=label)
                 .agg(q.sum()), relation, data)
    assert list(plan.schema) == ["symbol", "_lower_boundary", "_upper_boundary", "ts", "qty"]
    assert plan.time_output == "ts"
    assert plan.time_output_is == ("start" if label == "left" else "end")
    index = plan.output[3].meta.undo_aliases().meta.output_name()
    assert index == (WINDOW_START if label == "left" else WINDOW_END)


def test_expressions_over_and_under_aggregates(relation, data):
    plan = check(lambda f: f.group_by_dynamic("ts", every="2m", group_by="symbol").agg(
        (p.max() - p.min()).alias("range"),
        ((p * q).sum() / q.sum()).alias("vwap"),
        (p * q).sum().alias("notional"),
        p.mean().round(2).alias("avg"),
        q.count().alias("n_qty"), q.len().alias("rows"),
        p.n_unique().alias("prices"),
        pl.lit(1).alias("one"),
        pl.when(q.sum() > 100).then(pl.lit("big")).otherwise(pl.lit("small")).alias("size"),
    ), relation, data)
    funcs = [(a.func, str(a.expr)) for a in plan.aggs]
    # (p * q).sum() is computed once and shared by vwap and notional
    assert sum(f == "sum" and "price" in e for f, e in funcs) == 1
    assert ("count_star", "None") in funcs
    n_unique = next(a for a in plan.aggs if a.func == "n_unique")
    assert n_unique.count_null


def test_expression_key(relation, data):
    plan = check(lambda f: f.group_by_dynamic("ts", every="1m",
                                              group_by=pl.col("symbol").str.to_uppercase())
                 .agg(q.sum()), relation, data)
    assert isinstance(plan.input, RowMap)
    assert plan.keys == ("__key_symbol",)


def test_renamed_key(relation, data):
    plan = check(lambda f: f.group_by_dynamic("ts", every="1m",
                                              group_by=pl.col("symbol").alias("s"))
                 .agg(q.sum()), relation, data)
    assert plan.keys == ("symbol",)
    assert plan.schema.names()[0] == "s"


def test_row_steps_before_and_after(relation, data):
    plan = check(lambda f: f.filter(q > 5).rename({"ts": "t"})
                 .group_by_dynamic("t", every="1m", group_by="symbol").agg(p.max())
                 .filter(pl.col("price") > 100).with_columns(up=pl.col("price") * 2),
                 relation, data)
    assert isinstance(plan, RowMap)
    assert isinstance(plan.input, WindowAgg)
    assert isinstance(plan.input.input, RowMap)
    assert plan.time_column == "t"


def test_window_over_window(relation, data):
    # the inner view emits closed windows in time order; in batch that is a sort
    plan = check(lambda f: f.group_by_dynamic("ts", every="1m", group_by="symbol")
                 .agg(q.sum()).group_by_dynamic("ts", every="5m").agg(q.max()),
                 relation, data,
                 oracle=lambda f: f.group_by_dynamic("ts", every="1m", group_by="symbol")
                 .agg(q.sum()).sort("ts").group_by_dynamic("ts", every="5m").agg(q.max()))
    assert isinstance(plan, WindowAgg) and isinstance(plan.input, WindowAgg)
    assert plan.input.emit == "on_window_close"


def test_emit_on_update(trades, relation):
    frame = trades.group_by_dynamic("ts", every="1m", group_by="symbol").agg(*OHLC)
    plan = plan_lazyframe(frame, relation, emit="on_update")
    assert plan.emit == "on_update"
    assert plan.time_column is None
    assert plan_lazyframe(frame, relation, emit="on_window_close").emit == "on_window_close"


def test_emit_applies_to_the_outermost_aggregate(trades, relation):
    frame = (trades.group_by_dynamic("ts", every="1m", group_by="symbol").agg(q.sum())
             .group_by_dynamic("ts", every="5m").agg(q.max()).filter(pl.col("qty") > 1))
    plan = plan_lazyframe(frame, relation, emit="on_update")
    assert plan.input.emit == "on_update"
    assert plan.input.input.emit == "on_window_close"


def test_stacked_on_a_view():
    bars = Scan("bars", pl.Schema({"symbol": pl.String, "ts": pl.Datetime("us"),
                                   "volume": pl.Int64}), "ts")
    relations = {"bars": bars}.__getitem__
    plan = plan_lazyframe(stream(bars).group_by_dynamic("ts", every="5m", group_by="symbol")
                          .agg(pl.col("volume").sum()), relations, emit=None)
    assert isinstance(plan, WindowAgg) and plan.input is bars


# -- group_by ----------------------------------------------------------------------

def test_keyed_aggregate(relation, data):
    plan = check(lambda f: f.group_by("symbol").agg(
        p.first().alias("first"), p.last().alias("last"), q.sum(), p.mean().alias("avg"),
        pl.len(), p.n_unique().alias("nu"), (p.max() - p.min()).alias("spread")),
        relation, data)
    assert isinstance(plan, KeyedAgg)
    assert plan.keys == ("symbol",)
    assert {a.order for a in plan.aggs} == {"arrival"}
    assert {a.null_sum for a in plan.aggs} == {"zero"}
    assert plan.appends_only is False


def test_keyed_aggregate_several_keys_and_having(relation, data):
    plan = check(lambda f: f.with_columns(big=q > 25).group_by("symbol", "big")
                 .agg(q.sum().alias("volume"), pl.len().alias("n"))
                 .filter(pl.col("n") > 10).select("symbol", "big", "volume"),
                 relation, data)
    assert isinstance(plan, RowMap) and isinstance(plan.input, KeyedAgg)
    assert plan.input.keys == ("symbol", "big")


def test_keyed_aggregate_emit(trades, relation):
    frame = trades.group_by("symbol").agg(q.sum())
    assert isinstance(plan_lazyframe(frame, relation, emit="on_update"), KeyedAgg)


def test_all_null_sum_is_zero(relation):
    data = pl.DataFrame({"symbol": ["a", "a"], "price": [None, None], "qty": [None, None],
                         "ts": [0, 1]}, schema=relation("trades").schema)
    check(lambda f: f.group_by("symbol").agg(q.sum(), p.n_unique()), relation, data)
    check(lambda f: f.group_by_dynamic("ts", every="1s", group_by="symbol")
          .agg(q.sum(), p.n_unique()), relation, data)
