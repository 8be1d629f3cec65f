"""Every plan the engine cannot maintain is refused with a PlanError naming why."""

from __future__ import annotations

import re

import polars as pl
import pytest
from polars.io.plugins import register_io_source

from laminar_polars.errors import PlanError
from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.plan import LookupJoin, Scan

p, q, s, t = pl.col("price"), pl.col("qty"), pl.col("symbol"), pl.col("ts")


def dyn(f: pl.LazyFrame, **kwargs) -> pl.LazyFrame:
    options = {"every": "1m", "group_by": "symbol", **kwargs}
    return f.group_by_dynamic("ts", **options).agg(q.sum())


REFUSED = {
    # frame steps
    "sort": (lambda f: f.sort("ts"), "sort"),
    "join_full": (lambda f: f.join(f, on="symbol", how="full"), "join(how='full')"),
    "join_right": (lambda f: f.join(f, on="symbol", how="right"), "join(how='right')"),
    "join_semi": (lambda f: f.join(f, on="symbol", how="semi"), "join(how='semi')"),
    "join_cross": (lambda f: f.join(f, how="cross"), "join(how='cross')"),
    "join_left_unbounded": (lambda f: f.join(f, on="symbol", how="left"),
                            "LEFT join of two streams on keys alone"),
    "join_expression_key": (lambda f: f.join(f, left_on=s.str.to_lowercase(), right_on="symbol"),
                            "join keys must be columns"),
    "join_static_left": (lambda f: pl.LazyFrame({"symbol": ["a"]}).join(f, on="symbol"),
                         "the static DataFrame must be the right frame"),
    "join_asof_forward": (lambda f: f.join_asof(f, on="ts", by="symbol", strategy="forward"),
                          "join_asof(strategy='forward')"),
    "join_asof_static": (lambda f: f.join_asof(pl.LazyFrame(schema=f.collect_schema()),
                                               on="ts"), "join_asof with a static DataFrame"),
    "join_where_one_bound": (lambda f: f.join_where(f, pl.col("ts_right") >= t),
                             "needs both bounds"),
    "join_where_nothing": (lambda f: f.join_where(f, p < pl.col("price_right")),
                           "join_where needs a key equality"),
    "unique": (lambda f: f.unique(), "unique"),
    "head": (lambda f: f.head(3), "head"),
    "tail": (lambda f: f.tail(3), "tail"),
    "with_row_index": (lambda f: f.with_row_index(), "with_row_index"),
    "explode": (lambda f: f.with_columns(l=pl.concat_list("qty")).explode("l"), "explode"),
    "unpivot": (lambda f: f.unpivot(index="symbol"), "unpivot"),
    "unnest": (lambda f: f.select(pl.struct("qty").alias("st")).unnest("st"), "unnest"),
    "cache": (lambda f: f.cache(), "cache"),
    "concat_static": (lambda f: pl.concat([f, pl.LazyFrame(schema=f.collect_schema())]),
                      "concat with a static DataFrame"),
    "hconcat": (lambda f: pl.concat([f.select("qty"), f.select("ts")], how="horizontal"),
                "concat(how='horizontal')"),
    "map_batches": (lambda f: f.map_batches(lambda d: d), "map_batches"),
    "rolling": (lambda f: f.rolling("ts", period="1m").agg(q.sum()), "rolling"),
    "group_by_head": (lambda f: f.group_by("symbol").head(2), "explode"),
    "map_groups": (lambda f: f.group_by("symbol").map_groups(lambda d: d, schema=None),
                   "map_groups"),
    "whole_frame_agg": (lambda f: f.select(q.sum()), "aggregation sum() in a row-wise step"),
    "len_in_select": (lambda f: f.with_columns(n=pl.len()), "aggregation len()"),
    # expressions in row-wise steps
    "over": (lambda f: f.with_columns(m=q.sum().over("symbol")), ".over(...)"),
    "cum_sum": (lambda f: f.with_columns(c=q.cum_sum()), "function cum_sum"),
    "shift": (lambda f: f.with_columns(c=q.shift(1)), "function shift"),
    "diff": (lambda f: f.with_columns(c=q.diff()), "function diff"),
    "rank": (lambda f: f.with_columns(c=q.rank()), "function rank"),
    "sort_expr": (lambda f: f.with_columns(c=q.sort()), "sort is not supported"),
    "sort_by_expr": (lambda f: f.with_columns(c=q.sort_by("ts")), "sort_by"),
    "gather": (lambda f: f.with_columns(c=q.gather([0])), "gather"),
    "filter_expr": (lambda f: f.with_columns(c=q.filter(q > 1).sum()),
                    "aggregation sum()"),
    "hash": (lambda f: f.with_columns(c=q.hash()), "function hash"),
    "map_elements": (lambda f: f.with_columns(c=q.map_elements(lambda v: v,
                                                               return_dtype=pl.Int64)),
                     "Python function"),
    "series_literal": (lambda f: f.with_columns(c=pl.lit(pl.Series([1]))), "Series literal"),
    "literal_only_select": (lambda f: f.select(pl.lit(1)), "reads no column"),
    "concat_list": (lambda f: f.with_columns(c=pl.concat_list(q, q)),
                    "function list.concat is not supported"),
    "str_to_integer": (lambda f: f.with_columns(c=s.str.to_integer(strict=False)),
                       "function str.to_integer"),
    # aggregations
    "median": (lambda f: f.group_by("symbol").agg(p.median()), "median"),
    "quantile": (lambda f: f.group_by("symbol").agg(p.quantile(0.5)), "quantile"),
    "std": (lambda f: f.group_by("symbol").agg(p.std()), "std"),
    "var": (lambda f: f.group_by("symbol").agg(p.var()), "var"),
    "implode": (lambda f: f.group_by("symbol").agg(p.implode()), "implode"),
    "bare_column": (lambda f: f.group_by("symbol").agg(p), "implode"),
    "sorted_first": (lambda f: f.group_by("symbol").agg(p.sort().first()), "sort"),
    "first_non_null": (lambda f: f.group_by("symbol").agg(p.first(ignore_nulls=True)),
                       "first(ignore_nulls=True)"),
    "nan_max": (lambda f: f.group_by("symbol").agg(p.nan_max()), "nan_max"),
    "null_count": (lambda f: f.group_by("symbol").agg(p.null_count()),
                   "aggregation null_count"),
    "product": (lambda f: f.group_by("symbol").agg(p.product()), "aggregation product"),
    "arg_max": (lambda f: f.group_by("symbol").agg(p.arg_max()), "aggregation arg_max"),
    "literal_agg": (lambda f: f.group_by("symbol").agg(pl.lit(1).sum().alias("one")),
                    "reads no column"),
    "window_in_agg": (lambda f: f.group_by("symbol").agg(q.sum().over("symbol").sum()),
                      ".over(...)"),
    "cum_sum_in_agg": (lambda f: f.group_by("symbol").agg(q.cum_sum().sum()),
                       "function cum_sum"),
    # windows
    "calendar_every": (lambda f: dyn(f, every="1mo"), "every uses a calendar duration"),
    "calendar_period": (lambda f: dyn(f, every="1d", period="1y"),
                        "period uses a calendar duration"),
    "calendar_offset": (lambda f: dyn(f, every="1d", offset="1q"),
                        "offset uses a calendar duration"),
    "nanoseconds": (lambda f: dyn(f, every="1500ns"), "whole number of microseconds"),
    "closed_right": (lambda f: dyn(f, closed="right"), "closed='right'"),
    "closed_both": (lambda f: dyn(f, closed="both"), "closed='both'"),
    "label_datapoint": (lambda f: dyn(f, label="datapoint"), "label='datapoint'"),
    "start_by_datapoint": (lambda f: dyn(f, start_by="datapoint"), "start_by='datapoint'"),
    "start_by_monday": (lambda f: dyn(f, every="1w", start_by="monday"), "start_by='monday'"),
    "index_not_event_time": (lambda f: f.with_columns(t2=t).group_by_dynamic("t2", every="1m")
                             .agg(q.sum()), "index column 't2' is not the input's event-time"),
    "event_time_overwritten": (lambda f: f.with_columns(ts=t + pl.duration(seconds=1))
                               .group_by_dynamic("ts", every="1m").agg(q.sum()),
                               "needs an event-time column, and its input has none"),
    "window_over_keyed": (lambda f: f.group_by("symbol").agg(t.max())
                          .group_by_dynamic("ts", every="1m").agg(pl.len()),
                          "cannot aggregate over the group_by below it: its rows are updated"),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused(name, trades, relation):
    build, message = REFUSED[name]
    with pytest.raises(PlanError, match=re.escape(message)):
        plan_lazyframe(build(trades), relation, emit=None)


def test_window_over_on_update_window_has_no_event_time(trades, relation):
    frame = (trades.group_by_dynamic("ts", every="1m").agg(q.sum())
             .group_by_dynamic("ts", every="1h").agg(q.sum()))
    # the inner window keeps its default on_window_close; emit applies to the outer one
    assert plan_lazyframe(frame, relation, emit="on_update").input.emit == "on_window_close"


def test_integer_index(relation):
    scan = Scan("ticks", pl.Schema({"i": pl.Int64}), "i")
    frame = stream(scan).group_by_dynamic("i", every="2i").agg(pl.len())
    with pytest.raises(PlanError, match="integer index duration"):
        plan_lazyframe(frame, {"ticks": scan}.__getitem__, emit=None)


def test_index_column_not_microseconds():
    scan = Scan("ticks", pl.Schema({"ts": pl.Datetime("ns"), "v": pl.Int64}), "ts")
    frame = stream(scan).group_by_dynamic("ts", every="1m").agg(pl.col("v").sum())
    with pytest.raises(PlanError, match=r"has type Datetime\(time_unit='ns'"):
        plan_lazyframe(frame, {"ticks": scan}.__getitem__, emit=None)


def test_frame_not_on_a_stream(relation):
    with pytest.raises(PlanError, match="DataFrame scan"):
        plan_lazyframe(pl.LazyFrame({"a": [1]}), relation, emit=None)


def test_file_scan(relation, tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    with pytest.raises(PlanError, match="file scan"):
        plan_lazyframe(pl.scan_csv(path), relation, emit=None)


def test_foreign_python_scan(relation):
    def rows(*_):
        yield pl.DataFrame({"a": [1]})
    frame = register_io_source(rows, schema={"a": pl.Int64})
    with pytest.raises(PlanError, match=r"Python scan that is not db\.stream"):
        plan_lazyframe(frame, relation, emit=None)


def test_join_with_a_static_frame_is_a_lookup(trades, relation):
    other = pl.LazyFrame({"symbol": ["a"], "name": ["A"]})
    plan = plan_lazyframe(trades.join(other, on="symbol"), relation, emit=None)
    assert isinstance(plan, LookupJoin) and plan.frame is not None
    assert plan.frame.equals(other.collect())


def test_not_a_lazyframe(relation):
    with pytest.raises(PlanError, match="not DataFrame"):
        plan_lazyframe(pl.DataFrame({"a": [1]}), relation, emit=None)


def test_polars_cannot_resolve(trades, relation):
    with pytest.raises(PlanError, match=r"Polars could not resolve the plan.*nope"):
        plan_lazyframe(trades.select("nope"), relation, emit=None)


def test_unknown_emit(trades, relation):
    with pytest.raises(PlanError, match="unknown emit mode 'on_close'"):
        plan_lazyframe(trades, relation, emit="on_close")


def test_on_window_close_without_window(trades, relation):
    with pytest.raises(PlanError, match="needs a windowed aggregate \\(group_by_dynamic\\)"):
        plan_lazyframe(trades.filter(q > 1), relation, emit="on_window_close")
    keyed = r"continuous aggregate, whose rows are updated in place \(emit='on_update'\)"
    with pytest.raises(PlanError, match=keyed):
        plan_lazyframe(trades.group_by("symbol").agg(q.sum()), relation,
                       emit="on_window_close")


def test_stale_schema(trades):
    changed = Scan("trades", pl.Schema({"symbol": pl.String, "ts": pl.Datetime("us")}), "ts")
    with pytest.raises(PlanError, match="'trades' changed since its frame was made"):
        plan_lazyframe(trades.filter(s == "a"), {"trades": changed}.__getitem__, emit=None)


def test_unknown_relation_propagates(trades):
    def relation(name: str) -> Scan:
        raise KeyError(name)
    with pytest.raises(KeyError):
        plan_lazyframe(trades, relation, emit=None)
