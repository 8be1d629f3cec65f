"""The aggregate registry: for every entry, partials of a few micro-batches,
merged and finalized, equal Polars' own aggregate over the whole column.

The expected values are written here with plain Polars, independently of the
registry: nulls, ties in event time (first/last by event order), batches out
of event order, groups with no non-null value (sum and mean under both
``null_sum`` rules), a group seen in one batch only.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from laminar_polars.plan import AGGREGATES, Agg, AggregateFunction, aggregate

V, T = pl.col("v"), pl.col("t")

# Rows in arrival order: group g, value v (nulls), event time t (out of order, with ties).
ROWS = pl.DataFrame(
    {
        "g": ["a", "a", "b", "a", "c", "a", "b", "a", "a", "a", "b"],
        "v": [5, None, None, 3, 7, 3, None, 9, 1, None, None],
        "t": [20, 20, 4, 10, 3, 10, 8, 30, 30, 5, 2],
    },
    schema={"g": pl.String, "v": pl.Int64, "t": pl.Int64},
)
SPLITS = [(0, 3), (3, 7), (7, 11)]  # three micro-batches; 'c' is in the second only

CASES: dict[str, tuple[Agg, pl.Expr]] = {
    # name: (the aggregate, Polars' own over the rows of a group in arrival order)
    "count_star": (Agg("x", "count_star"), pl.len()),
    "count": (Agg("x", "count", V), V.count()),
    "sum_sql": (Agg("x", "sum", V, null_sum="null"), pl.when(V.count() > 0).then(V.sum())),
    "sum_polars": (Agg("x", "sum", V, null_sum="zero"), V.sum()),
    "min": (Agg("x", "min", V), V.min()),
    "max": (Agg("x", "max", V), V.max()),
    "mean": (Agg("x", "mean", V), V.mean()),
    # by event order: the value at the earliest/latest time, ties by arrival
    "first_event": (Agg("x", "first", V, order="event"), V.sort_by(T, maintain_order=True).first()),
    "last_event": (Agg("x", "last", V, order="event"), V.sort_by(T, maintain_order=True).last()),
    "first_arrival": (Agg("x", "first", V, order="arrival"), V.first()),
    "last_arrival": (Agg("x", "last", V, order="arrival"), V.last()),
    "n_unique_sql": (Agg("x", "n_unique", V), V.drop_nulls().n_unique()),
    "n_unique_polars": (Agg("x", "n_unique", V, count_null=True), V.n_unique()),
}


def _batches() -> list[pl.DataFrame]:
    return [ROWS.slice(start, end - start) for start, end in SPLITS]


def _packed(batch: pl.DataFrame) -> tuple[pl.DataFrame, int, int]:
    """``batch`` with its event order packed into one integer column ``o``, as
    the engine packs it: time since the batch's earliest, shifted past the position."""
    low, shift = batch["t"].min(), batch.height.bit_length()
    order = (T - low) * (1 << shift) + pl.int_range(pl.len(), dtype=pl.Int64)
    return batch.with_columns(order.alias("o")), low, shift  # type: ignore[return-value]


def _partials(function: AggregateFunction, agg: Agg, batch: pl.DataFrame,
              how: str) -> pl.DataFrame:
    if how == "packed":
        packed, low, shift = _packed(batch)
        partials = packed.group_by("g", maintain_order=True).agg(
            function.partials(agg, V, T, pl.col("o")))
        unpack = function.unpack(agg, lambda c: c // (1 << shift) + low)
        return partials.with_columns(unpack) if unpack else partials
    return batch.group_by("g", maintain_order=True).agg(function.partials(agg, V, T))


def _finals(agg: Agg, how: str) -> pl.DataFrame:
    """Partials per batch (by ``how``), stacked in arrival order, merged, finalized."""
    function = aggregate(agg.func)
    batches = _batches()
    frames = [_partials(function, agg, b, how) for b in batches]
    if how == "rows":  # the last batch as one partial per row, as a window close folds it
        rows = batches[-1].select(pl.col("g"), *function.row_partials(agg, V, T))
        frames[-1] = rows.cast(dict(frames[0].schema))
    merged = pl.concat(frames).group_by("g", maintain_order=True).agg(function.merges(agg))
    if function.distinct:
        values = pl.concat([b.select("g", V) for b in batches]).unique()
        counts = values.group_by("g").agg(function.count_distinct(agg, V).alias(agg.name))
        merged = merged.join(counts, on="g", how="left")
    return merged.select("g", function.final(agg)).sort("g")


def test_every_entry_has_a_case():
    assert {agg.func for agg, _ in CASES.values()} == set(AGGREGATES)


@pytest.mark.parametrize("how", ["batches", "packed", "rows"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_partial_merge_final_equals_polars(case, how):
    agg, own = CASES[case]
    function = aggregate(agg.func)
    if how == "rows" and function.distinct:
        with pytest.raises(ValueError, match="no per-row partial"):
            function.row_partials(agg, V, T)
        return
    if how == "packed":  # the same partials as without packing, times included
        for batch in _batches():
            assert_frame_equal(_partials(function, agg, batch, "packed"),
                               _partials(function, agg, batch, "batches"))
    expected = ROWS.group_by("g").agg(own.alias("x")).sort("g")
    got = _finals(agg, how)
    assert_frame_equal(got, expected, check_dtypes=False)
    assert function.result_type(ROWS.schema["v"]) == expected.schema["x"]


@pytest.mark.parametrize("case", sorted(CASES))
def test_partial_columns_name_every_expression(case):
    agg, _ = CASES[case]
    function = aggregate(agg.func)
    columns = function.partial_columns(agg)
    assert ROWS.select(function.partials(agg, V, T)).columns == list(columns)
    assert ROWS.with_columns(o=T).select(function.partials(agg, V, T, pl.col("o"))).columns \
        == list(columns)
    partial = ROWS.select(function.partials(agg, V, T))
    assert partial.select(function.merges(agg)).columns == list(columns)
    if not function.distinct:
        assert ROWS.select(function.row_partials(agg, V, T)).columns == list(columns)


@pytest.mark.parametrize("null_sum, expected", [("null", None), ("zero", 0)])
def test_sum_and_mean_of_no_rows(null_sum, expected):
    """A group with no row at all (a global aggregate before any input)."""
    empty = ROWS.clear()
    for func, want in (("sum", expected), ("mean", None)):
        agg = Agg("x", func, V, null_sum=null_sum)  # type: ignore[arg-type]
        function = aggregate(func)
        merged = empty.select(function.partials(agg, V, T)).select(function.merges(agg))
        assert merged.select(function.final(agg)).item() == want, func


def test_first_and_last_ties_across_batches():
    """Equal event times in different batches: first keeps the earliest arrival,
    last the latest, whichever batch they came in."""
    rows = pl.DataFrame({"g": ["a"] * 4, "v": [1, 2, 3, 4], "t": [7, 9, 7, 9]})
    for func, want in (("first", 1), ("last", 4)):
        agg = Agg("x", func, V)  # type: ignore[arg-type]
        function = aggregate(func)
        partials = [rows.slice(i, 2).select(function.partials(agg, V, T)) for i in (0, 2)]
        merged = pl.concat(partials).select(function.merges(agg))
        assert merged.select(function.final(agg)).item() == want


@pytest.mark.parametrize(
    "dtype", [pl.Int8, pl.Int32, pl.UInt64, pl.Float32, pl.Boolean, pl.String,
              pl.Datetime("us"), pl.Duration("us")])
def test_result_type_is_polars_own(dtype):
    frame = pl.DataFrame({"v": []}, schema={"v": dtype})
    for case in sorted(CASES):
        agg, own = CASES[case]
        try:
            want = frame.lazy().select(own).collect_schema().dtypes()[0]
        except pl.exceptions.PolarsError:
            continue  # Polars cannot aggregate this type this way
        assert aggregate(agg.func).result_type(dtype) == want, (case, dtype)
    assert aggregate("count_star").result_type(None) == pl.UInt32


def test_lookup():
    assert aggregate("mean").sql_name == "avg" and aggregate("count_star").polars_name == "len"
    assert [f.name for f in AGGREGATES.values() if f.distinct] == ["n_unique"]
    assert [f.name for f in AGGREGATES.values() if not f.takes_input] == ["count_star"]
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        aggregate("median")
    with pytest.raises(ValueError, match="unknown aggregate 'median'"):
        Agg("x", "median", V)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="takes no input"):
        Agg("x", "count_star", V)
