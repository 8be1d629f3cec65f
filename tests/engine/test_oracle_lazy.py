"""LazyFrame views must equal Polars itself.

Each test writes the view as a function ``build(lf)``, registers
``build(db.stream("trades"))`` and compares the sink's rows with
``build(<the rows that were not late>)`` collected by Polars (stably sorted by
event time for ``group_by_dynamic``, in arrival order for ``group_by``).
Dtypes are checked: a LazyFrame view has Polars' own output schema.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl
import pytest
from oracle import (
    MODES,
    MS,
    SCENARIOS,
    assert_same,
    at,
    drive,
    gen_trades,
    last_per_key,
    real_rows,
    run_lazy,
    scenario,
    split_late,
    stable_seed,
    trades_ddl,
)

import laminar_polars as lp

DELAY_US = 100 * MS

Build = Callable[[pl.LazyFrame], pl.LazyFrame]


def ohlc_aggs() -> list[pl.Expr]:
    return [
        pl.col("price").first().alias("open"),
        pl.col("price").max().alias("high"),
        pl.col("price").min().alias("low"),
        pl.col("price").last().alias("close"),
        pl.col("qty").sum().alias("volume"),  # Polars: sum of nulls is 0
        pl.len().alias("trades"),
        pl.col("price").count().alias("n_price"),
        pl.col("price").mean().alias("avg_price"),
        pl.col("qty").mean().alias("avg_qty"),
        pl.col("qty").n_unique().alias("n_qty"),  # Polars: counts null as a value
        pl.col("qty").first().alias("first_qty"),
        pl.col("qty").last().alias("last_qty"),
    ]


def run_view(db: lp.LaminarDB, build: Build, kind: str, mode: str, seed: int, *,
             emit: str | None = None, n: int = 400, null_frac: float = 0.1,
             sort_by: str | None = "ts", delay_us: int = DELAY_US, **gen) -> tuple:
    db.execute(trades_ddl(delay_us // MS))
    view = build(db.stream("trades"))
    assert isinstance(view, pl.LazyFrame)
    db.create_materialized_view("v", view, emit=emit)
    rows = gen_trades(n, seed, null_frac=null_frac, **gen)
    events = scenario(kind, rows, delay_us, seed)
    kept, late = split_late(events, delay_us)
    assert bool(late) == (kind == "late")
    got = drive(db, events, mode, seed, ["v"], rounds=1 + seed % 4, settle_view="v",
                delay_us=delay_us)["v"]
    expected = run_lazy(build, real_rows(kept), sort_by=sort_by)
    return got, expected


# -- group_by_dynamic -------------------------------------------------------------------

DYNAMIC = {
    "tumble-1s": dict(every="1s"),
    "tumble-250ms": dict(every="250ms"),
    "tumble-1s-offset": dict(every="1s", offset="250ms"),
    "hop-every500ms-period2s": dict(every="500ms", period="2s"),
    "hop-every1s-period3s-offset": dict(every="1s", period="3s", offset="-300ms"),
    "gaps-every2s-period1s": dict(every="2s", period="1s"),
}


@pytest.mark.parametrize("window", list(DYNAMIC.values()), ids=list(DYNAMIC))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_group_by_dynamic_all_aggregates(db, kind, mode, window):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", group_by="symbol", **window).agg(*ohlc_aggs())

    got, expected = run_view(db, build, kind, mode, stable_seed(kind, mode, window), n=300)
    assert_same(got, expected)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_group_by_dynamic_without_group_by(db, kind):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="500ms").agg(
            pl.len().alias("n"), pl.col("price").max().alias("high"),
            pl.col("qty").last().alias("last_qty"))

    got, expected = run_view(db, build, kind, "mixed", stable_seed(kind, "nokey"))
    assert_same(got, expected)


def test_group_by_dynamic_include_boundaries(db):
    """The engine supports include_boundaries: _lower_boundary / _upper_boundary
    are the window's start and end, as Polars computes them."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="1s", period="2s", group_by="symbol",
                                   include_boundaries=True).agg(pl.col("qty").sum())

    got, expected = run_view(db, build, "late", "mixed", 5)
    assert {"_lower_boundary", "_upper_boundary"} <= set(got.columns)
    assert expected.height > 5
    assert_same(got, expected)


def test_group_by_dynamic_first_row_shifts_earlier_within_delay(db):
    """A key's earliest row may arrive after a later one (within the delay): the
    windows Polars generates start from the earliest row, and the view must too.
    A delay longer than the period makes this visible for hopping windows."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="1s", period="3s", group_by="symbol").agg(
            pl.len().alias("n"), pl.col("qty").sum().alias("q"))

    db.execute(trades_ddl(5000))
    db.create_materialized_view("v", build(db.stream("trades")))
    rows = [("A", 1.0, 1, at(5_500_000)), ("A", 1.0, 2, at(6_200_000)),
            ("A", 1.0, 4, at(2_100_000)),  # not late (delay 5 s): first row moves to 2.1 s
            ("B", 1.0, 8, at(9_000_000))]
    assert not split_late(rows, 5_000_000)[1]
    got = drive(db, rows, "row", 1, ["v"])["v"]
    expected = run_lazy(build, real_rows(rows))
    assert_same(got, expected)


@pytest.mark.parametrize("offset", ["-300ms", "-1300ms", "1500ms", "250ms"])
def test_group_by_dynamic_offset_first_window_as_polars(db, offset):
    """Polars starts a key's windows at truncate(first ts, every) + offset, stepped
    back by ``every`` while that is after the first row. With a negative offset
    and period > every, that start can be a full ``every`` before the last grid
    point at or before the first row: [0.7 s, 3.7 s) for a first row at 1.747 s."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return lf.group_by_dynamic("ts", every="1s", period="3s", offset=offset,
                                   group_by="symbol").agg(pl.len().alias("n"))

    db.execute(trades_ddl(100))
    db.create_materialized_view("v", build(db.stream("trades")))
    rows = [("A", 1.0, 1, at(1_747_000)), ("A", 1.0, 2, at(4_100_000))]
    got = drive(db, rows, "row", 1, ["v"])["v"]
    assert_same(got, run_lazy(build, real_rows(rows)))


# -- row-wise steps before and after aggregation ---------------------------------------------

def test_steps_before_and_after_group_by_dynamic(db):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return (lf
                .filter(pl.col("price").is_not_null() & (pl.col("qty") > 20))
                .with_columns(notional=pl.col("price") * pl.col("qty"),
                              big=pl.col("qty") >= 250)
                .group_by_dynamic("ts", every="1s", group_by="symbol")
                .agg(pl.col("notional").sum(), pl.col("qty").sum().alias("volume"),
                     pl.col("big").sum().alias("n_big"), pl.len().alias("n"))
                .filter(pl.col("n") > 1)
                .with_columns(vwap=pl.col("notional") / pl.col("volume"))
                .select("symbol", "ts", "vwap", "n_big", "volume"))

    got, expected = run_view(db, build, "late", "mixed", 17, n=800)
    assert expected.height > 10
    assert_same(got, expected)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_row_wise_only_view(db, kind):
    """filter / with_columns / select / rename / drop without aggregation: every
    kept row goes through, once."""
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return (lf.filter((pl.col("qty") % 3 != 0) | pl.col("price").is_null())
                .with_columns(notional=pl.col("price") * pl.col("qty"),
                              qty32=pl.col("qty").cast(pl.Int32),
                              sym=pl.col("symbol").str.to_lowercase())
                .rename({"price": "px"})
                .drop("symbol")
                .select("sym", "ts", "px", "qty32", "notional"))

    got, expected = run_view(db, build, kind, "mixed", stable_seed(kind, "rowwise"),
                             sort_by=None)
    assert_same(got, expected)


# -- continuous aggregates (group_by().agg()) ----------------------------------------------

def continuous(lf: pl.LazyFrame) -> pl.LazyFrame:
    return lf.group_by("symbol").agg(
        pl.col("qty").sum().alias("volume"), pl.len().alias("n"),
        pl.col("price").max().alias("high"), pl.col("price").min().alias("low"),
        pl.col("price").mean().alias("avg_price"), pl.col("price").count().alias("n_price"),
        pl.col("price").first().alias("first_price"),  # arrival order in group_by
        pl.col("price").last().alias("last_price"),
        pl.col("qty").n_unique().alias("n_qty"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_continuous_group_by_last_upsert_is_batch_answer(db, kind, mode):
    got, expected = run_view(db, continuous, kind, mode, stable_seed(kind, mode, "cont"),
                             sort_by=None, symbols=("A", "B", "C", "D", "E"))
    assert_same(last_per_key(got, ["symbol"]), expected)


def test_continuous_group_by_with_steps_around(db):
    def build(lf: pl.LazyFrame) -> pl.LazyFrame:
        return (lf.with_columns(side=pl.when(pl.col("qty") > 250).then(pl.lit("big"))
                                .otherwise(pl.lit("small")))
                .filter(pl.col("price").is_not_null())
                .group_by("symbol", "side")
                .agg(pl.col("qty").sum().alias("volume"), pl.len().alias("n"))
                .with_columns(avg=pl.col("volume") / pl.col("n")))

    got, expected = run_view(db, build, "late", "mixed", 23, sort_by=None)
    assert_same(last_per_key(got, ["symbol", "side"]), expected)


def test_continuous_group_by_changelog_ops(db):
    db.execute(trades_ddl(100))
    db.create_materialized_view("v", continuous(db.stream("trades")))
    db.create_sink("changes", "v", changelog=True)
    rows = gen_trades(300, 31, symbols=("A", "B", "C"))
    events = scenario("late", rows, DELAY_US, 31)
    kept, _ = split_late(events, DELAY_US)
    out = drive(db, events, "mixed", 31, ["changes", "v"])
    changes, plain = out["changes"], out["v"]
    assert changes.columns == [*plain.columns, "op"]
    assert changes.schema["op"] == pl.String
    assert set(changes["op"].unique()) <= {"insert", "update"}
    firsts = changes.unique(subset=["symbol"], keep="first", maintain_order=True)
    assert firsts["op"].to_list() == ["insert"] * firsts.height
    assert (changes["op"] == "insert").sum() == firsts.height == 3
    expected = run_lazy(continuous, real_rows(kept), sort_by=None)
    assert_same(last_per_key(changes.drop("op"), ["symbol"]), expected)
    assert_same(last_per_key(plain, ["symbol"]), expected)
