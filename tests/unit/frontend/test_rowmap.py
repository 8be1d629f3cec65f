"""Row-wise steps: the plan is a RowMap whose steps, run in batch, equal the user's frame."""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.plan import RowMap, Scan, apply_steps

p, q, s, t = pl.col("price"), pl.col("qty"), pl.col("symbol"), pl.col("ts")

# Every expression the front end rebuilds from the IR, applied with with_columns.
EXPRESSIONS = {
    "arith": p * q + 1 - p / 2,
    "floordiv_mod": (q // 3) + (q % 3),
    "compare": (p > 100) & (q <= 10) | (p == 99.5) ^ (q != 3),
    "eq_missing": p.eq_missing(None) | q.ne_missing(5),
    "neg_abs": (-p).abs(),
    "floor_ceil": p.floor() + p.ceil(),
    "sqrt_exp_log": p.sqrt() + (p / 100).exp() + p.log() + p.log(10),
    "pow_sign": p.pow(2) + (p - 100).sign() + p.pow(q.cast(pl.Float64) / 100),
    "round": p.round(1) + p.round(0, mode="half_away_from_zero"),
    "round_sig_figs": p.round_sig_figs(2),
    "clip": p.clip(95, 105) + q.clip(upper_bound=10) + q.clip(lower_bound=5),
    "fill_null": p.fill_null(0) + q.fill_null(q),
    "fill_nan": p.fill_nan(0),
    "coalesce": pl.coalesce(p, q),
    "horizontal": pl.max_horizontal(p, q) + pl.min_horizontal(p, q) + pl.sum_horizontal(p, q),
    "sum_horizontal_nulls": pl.sum_horizontal(p, q, ignore_nulls=False),
    "null_checks": p.is_null() | q.is_not_null(),
    "not": ~(p > 100),
    "nan_checks": p.is_nan() | p.is_not_nan() | p.is_finite() | p.is_infinite(),
    "between": p.is_between(95, 105) | q.is_between(1, 5, closed="left"),
    "is_in": s.is_in(["AAPL", "Tsla"]) | q.is_in([1, 2, 3]),
    "any_all": pl.any_horizontal(p > 100, q > 10) & pl.all_horizontal(p > 90, q > 1),
    "when": pl.when(p > 100).then(q).when(p > 95).then(q * 2).otherwise(None),
    "cast": q.cast(pl.Float32) + p.cast(pl.Int32, strict=False) + q.cast(pl.Int8, strict=False),
    "cast_wrap": q.cast(pl.UInt8, wrap_numerical=True),
    "str_contains": s.str.contains("A") | s.str.contains("o", literal=True)
    | s.str.contains("[", strict=False),
    "str_starts_ends": s.str.starts_with("A") | s.str.ends_with("a"),
    "str_case": s.str.to_lowercase() + s.str.to_uppercase(),
    "str_len": s.str.len_chars() + s.str.len_bytes(),
    "str_slice": s.str.slice(1) + s.str.slice(0, 2) + s.str.head(2) + s.str.tail(1),
    "str_strip": s.str.strip_chars() + s.str.strip_chars("A ") + s.str.strip_chars_start()
    + s.str.strip_chars_end(" g"),
    "str_prefix": s.str.strip_prefix("A") + s.str.strip_suffix("a"),
    "str_replace": s.str.replace("o", "0") + s.str.replace_all("o", "0", literal=True)
    + s.str.replace("o", "x", literal=True, n=2),
    "concat_str": pl.concat_str([s, q], separator="-") + pl.concat_str([s, q], ignore_nulls=True),
    "str_pad": s.str.zfill(8) + s.str.pad_start(8, "*") + s.str.pad_end(8),
    "str_misc": s.str.reverse() + s.str.count_matches("o").cast(pl.String)
    + s.str.find("o").cast(pl.String) + s.str.extract("([a-z]+)", 1),
    "str_concat_op": s + "!",
    "dt_parts": t.dt.year() + t.dt.month() + t.dt.day() + t.dt.hour() + t.dt.minute()
    + t.dt.second() + t.dt.weekday() + t.dt.ordinal_day() + t.dt.quarter() + t.dt.week()
    + t.dt.iso_year(),
    "dt_sub_second": t.dt.millisecond() + t.dt.microsecond() + t.dt.nanosecond(),
    "dt_date_time": pl.concat_str(t.dt.date().cast(pl.String), t.dt.time().cast(pl.String)),
    "dt_epoch": t.dt.epoch("ms") + t.dt.timestamp("us"),
    "dt_truncate_round": t.dt.truncate("1m").dt.round("1h").dt.offset_by("1d"),
    "dt_to_string": t.dt.to_string("%Y-%m-%d %H"),
    "dt_cast_unit": t.dt.cast_time_unit("ms"),
    "dt_month_bounds": t.dt.month_start().dt.date() - t.dt.month_end().dt.date(),
    "dt_arith": t + timedelta(seconds=30) > datetime(2024, 1, 1, 9, 40),
    "dt_total": (t - datetime(2024, 1, 1)).dt.total_seconds()
    + (t - datetime(2024, 1, 1)).dt.total_minutes(fractional=True)
    + (t - datetime(2024, 1, 1)).dt.total_milliseconds(),
    "literals": pl.lit(1, dtype=pl.UInt8) + pl.lit(2.5) + q,
    "literal_string_date": pl.concat_str(pl.lit("x"), pl.lit(datetime(2024, 1, 1).date())
                                         .cast(pl.String)),
    "null_literal": pl.lit(None).alias("n"),
    "bool_literal": pl.lit(True) & (q > 3),
}


def _check_rowmap(frame_of, relation, data: pl.DataFrame) -> RowMap:
    scan = relation("trades")
    plan = plan_lazyframe(frame_of(stream(scan)), relation, emit=None)
    assert isinstance(plan, RowMap)
    assert plan.input is scan
    expected = frame_of(data.lazy()).collect()
    got = apply_steps(data.lazy(), plan.steps).collect()
    assert_frame_equal(got, expected)
    assert plan.schema == expected.schema
    return plan


@pytest.mark.parametrize("name", sorted(EXPRESSIONS))
def test_expression_round_trip(name, relation, data):
    expr = EXPRESSIONS[name]
    plan = _check_rowmap(lambda f: f.with_columns(out=expr), relation, data)
    assert [step.kind for step in plan.steps] == ["with_columns"]


@pytest.mark.parametrize("name", ["compare", "null_checks", "str_contains", "between", "is_in",
                                  "any_all", "dt_arith"])
def test_filter_round_trip(name, relation, data):
    plan = _check_rowmap(lambda f: f.filter(EXPRESSIONS[name]), relation, data)
    assert [step.kind for step in plan.steps] == ["filter"]
    assert plan.time_column == "ts"


SHAPES = {
    "filter_select": lambda f: f.filter(pl.col("qty") > 5).select("symbol", "ts", "price"),
    "select_exprs": lambda f: f.select(pl.col("symbol"), (pl.col("price") * 2).alias("p2"),
                                       pl.lit(1).alias("one")),
    "with_columns": lambda f: f.with_columns(notional=pl.col("price") * pl.col("qty")),
    "rename": lambda f: f.rename({"price": "px", "ts": "event_time"}),
    "drop": lambda f: f.drop("qty"),
    "cast": lambda f: f.cast({"qty": pl.Float64}),
    "selectors": lambda f: f.select(pl.all().exclude("qty")),
    "all_suffix": lambda f: f.with_columns(pl.col("price", "qty").name.suffix("_x")),
    "chain": lambda f: (f.filter(pl.col("price").is_not_null())
                        .with_columns(n=pl.col("price") * pl.col("qty"))
                        .filter(pl.col("n") > 500).drop("qty").rename({"n": "notional"})),
    "with_row_literal": lambda f: f.with_columns(source=pl.lit("feed")),
    "fill_null_frame": lambda f: f.fill_null(0),
    "drop_nulls_frame": lambda f: f.drop_nulls(),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_row_wise_shapes(name, relation, data):
    _check_rowmap(SHAPES[name], relation, data)


def test_steps_keep_user_order(trades, relation):
    frame = trades.with_columns(x=pl.col("qty") * 2).filter(pl.col("x") > 4).select("x", "ts")
    plan = plan_lazyframe(frame, relation, emit=None)
    assert [step.kind for step in plan.steps] == ["with_columns", "filter", "select"]


def test_event_time_followed_through_rename(trades, relation):
    plan = plan_lazyframe(trades.rename({"ts": "t"}), relation, emit=None)
    assert plan.time_column == "t"
    plan = plan_lazyframe(trades.drop("ts"), relation, emit=None)
    assert plan.time_column is None


def test_bare_stream_is_the_scan(trades, relation):
    assert plan_lazyframe(trades, relation, emit=None) is relation("trades")


def test_placeholder_carries_the_schema(trades, relation):
    assert trades.collect_schema() == relation("trades").schema
    assert trades.collect().schema == relation("trades").schema
    assert trades.collect().height == 0


def test_relation_is_resolved_by_name(trades, relation):
    fresh = Scan("trades", relation("trades").schema, "ts", appends_only=True)
    plan = plan_lazyframe(trades.filter(pl.col("qty") > 1), {"trades": fresh}.__getitem__,
                          emit=None)
    assert plan.input is fresh


def test_stacked_view_is_a_scan():
    view = Scan("ohlc", pl.Schema({"symbol": pl.String, "ts": pl.Datetime("us"),
                                   "close": pl.Float64}), "ts")
    relations = {"ohlc": view}.__getitem__
    plan = plan_lazyframe(stream(view).filter(pl.col("close") > 1), relations, emit="on_update")
    assert isinstance(plan, RowMap) and plan.input is view
