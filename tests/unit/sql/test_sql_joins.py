"""SQL joins and UNION ALL → plan nodes: which node each form becomes, with
which keys, bounds and options; how the joined columns are named; and every
refusal with the reason it gives."""

from __future__ import annotations

import polars as pl
import pytest

from laminar_polars.errors import CatalogError, ConfigError, PlanError
from laminar_polars.plan import (
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    LookupJoin,
    Node,
    RowMap,
    Scan,
    Union,
    WindowAgg,
    explain,
)
from laminar_polars.sql import parse_statements, plan_select

TRADES = Scan("trades", pl.Schema({"sym": pl.String, "px": pl.Float64, "qty": pl.Int64,
                                   "ts": pl.Datetime("us")}), "ts")
QUOTES = Scan("quotes", pl.Schema({"sym": pl.String, "bid": pl.Float64, "size": pl.Int64,
                                   "ts": pl.Datetime("us")}), "ts")
PLAIN = Scan("plain", pl.Schema({"sym": pl.String, "v": pl.Int64}), None)
TOTALS = Scan("totals", pl.Schema({"sym": pl.String, "n": pl.UInt32}), None,
              appends_only=False)
REFS = Scan("refs", pl.Schema({"sym": pl.String, "name": pl.String, "lot": pl.Int64}),
            table=True)
RELATIONS = {scan.name: scan for scan in (TRADES, QUOTES, PLAIN, TOTALS, REFS)}


def relation(name: str) -> Scan:
    if name not in RELATIONS:
        raise CatalogError(f"unknown source or view {name!r}")
    return RELATIONS[name]


def plan(sql: str) -> Node:
    [statement] = parse_statements(sql)
    if hasattr(statement, "state_ttl_us"):
        return plan_select(statement.query, relation, statement.emit, statement.state_ttl_us)
    return plan_select(statement.query, relation, None)  # type: ignore[union-attr]


def join_of(node: Node) -> Node:
    """The join below a view's row-wise steps."""
    while isinstance(node, RowMap):
        node = node.input
    return node


ASOF = "FROM trades t ASOF JOIN quotes q ON t.sym = q.sym AND t.ts >= q.ts"
INTERVAL = ("FROM trades t JOIN quotes q ON t.sym = q.sym "
            "AND q.ts BETWEEN t.ts - INTERVAL '2' SECOND AND t.ts + INTERVAL '1' SECOND")


# -- which node, with what ---------------------------------------------------------------

def test_asof_join():
    node = join_of(plan(f"SELECT t.px, q.bid {ASOF}"))
    assert isinstance(node, AsofJoin)
    assert (node.how, node.left_by, node.tolerance_us, node.allow_exact_matches) == (
        "inner", ("sym",), None, True)
    left = join_of(plan("SELECT * FROM trades t ASOF LEFT JOIN quotes q ON q.sym = t.sym "
                        "AND q.ts < t.ts AND t.ts - q.ts <= INTERVAL '5' SECOND"))
    assert isinstance(left, AsofJoin)
    assert (left.how, left.allow_exact_matches, left.tolerance_us) == ("left", False, 5_000_000)
    strict = join_of(plan("SELECT * FROM trades t ASOF JOIN quotes q ON t.sym = q.sym "
                          "AND q.ts <= t.ts AND q.ts > t.ts - INTERVAL '1' SECOND"))
    assert isinstance(strict, AsofJoin) and strict.tolerance_us == 999_999


def test_interval_join_bounds_in_any_spelling():
    node = join_of(plan(f"SELECT * {INTERVAL}"))
    assert isinstance(node, IntervalJoin)
    assert (node.lower_us, node.upper_us, node.lower_strict, node.upper_strict) == (
        -2_000_000, 1_000_000, False, False)
    same = join_of(plan("SELECT * FROM trades t JOIN quotes q ON t.sym = q.sym "
                        "AND t.ts <= q.ts + INTERVAL '2' SECOND "
                        "AND q.ts - t.ts < INTERVAL '1' SECOND"))
    assert isinstance(same, IntervalJoin)
    assert (same.lower_us, same.upper_us, same.lower_strict, same.upper_strict) == (
        -2_000_000, 1_000_000, False, True)
    keyless = join_of(plan("SELECT * FROM trades t JOIN quotes q "
                           "ON q.ts BETWEEN t.ts AND t.ts + INTERVAL '10' MILLISECOND"))
    assert isinstance(keyless, IntervalJoin) and keyless.left_keys == ()


def test_window_and_unbounded_equi_joins():
    window = join_of(plan("SELECT * FROM trades t LEFT JOIN quotes q "
                          "ON t.sym = q.sym AND t.ts = q.ts"))
    assert isinstance(window, EquiJoin) and window.windowed and window.how == "left"
    assert window.right_on == ("sym", "ts")
    unbounded = join_of(plan("SELECT * FROM trades t JOIN plain p ON t.sym = p.sym"))
    assert isinstance(unbounded, EquiJoin) and not unbounded.windowed
    assert unbounded.time_column is None
    ttl = join_of(plan("CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 minute') AS "
                       "SELECT * FROM trades t JOIN quotes q ON t.sym = q.sym"))
    assert isinstance(ttl, EquiJoin) and ttl.state_ttl_us == 60_000_000
    assert ttl.time_column == "ts"


def test_lookup_join_with_a_table():
    node = join_of(plan("SELECT t.*, r.name FROM trades t LEFT JOIN refs r ON t.sym = r.sym"))
    assert isinstance(node, LookupJoin) and node.table_name == "refs" and node.how == "left"
    residual = join_of(plan("SELECT t.px FROM trades t JOIN refs r ON t.sym = r.sym "
                            "AND t.qty >= r.lot AND r.name <> 'x'"))
    assert isinstance(residual, LookupJoin) and len(residual.residual) == 2
    keyed = join_of(plan("SELECT * FROM trades t JOIN refs r ON lower(t.sym) = r.sym"))
    assert isinstance(keyed, LookupJoin) and keyed.left_on == ("__join_key0",)


def test_conditions_on_one_side_filter_it_first():
    node = join_of(plan("SELECT t.px FROM trades t JOIN quotes q ON t.sym = q.sym "
                        "AND t.ts = q.ts AND q.bid > 1 AND t.qty > 2"))
    assert isinstance(node, EquiJoin) and not node.residual
    assert isinstance(node.left, RowMap) and isinstance(node.right, RowMap)
    left = join_of(plan("SELECT t.px FROM trades t LEFT JOIN quotes q ON t.sym = q.sym "
                        "AND t.ts = q.ts AND q.bid > 1"))
    assert isinstance(left, EquiJoin) and isinstance(left.right, RowMap)


def test_union_all():
    node = plan("SELECT sym, px, ts FROM trades UNION ALL SELECT sym, bid, ts FROM quotes "
                "UNION ALL (SELECT sym, bid, ts FROM quotes WHERE bid > 1)")
    assert isinstance(node, Union) and len(node.inputs) == 3
    assert list(node.schema) == ["sym", "px", "ts"] and node.time_column == "ts"


def test_joins_in_subqueries_and_aggregates_over_them():
    node = plan("SELECT sym, count(*) AS n, tumble(ts, INTERVAL '1' SECOND) AS ws "
                f"FROM (SELECT t.sym, t.ts {INTERVAL}) AS j "
                "GROUP BY sym, tumble(ts, INTERVAL '1' SECOND)")
    assert isinstance(node, WindowAgg) and isinstance(join_of(node.input), IntervalJoin)
    stacked = plan("SELECT a.sym, p.v FROM (SELECT t.sym, t.ts FROM trades t ASOF JOIN quotes q "
                   "ON t.sym = q.sym AND t.ts >= q.ts) AS a JOIN plain p ON a.sym = p.sym")
    assert isinstance(join_of(stacked), EquiJoin)
    three = plan("SELECT t.px, q.bid, p.v FROM trades t "
                 "JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts JOIN plain p ON p.sym = t.sym")
    assert list(three.schema) == ["px", "bid", "v"]


# -- column names ----------------------------------------------------------------------

def test_select_star_names_the_right_side_by_its_alias():
    assert list(plan(f"SELECT * {ASOF}").schema) == [
        "sym", "px", "qty", "ts", "sym:q", "bid", "size", "ts:q"]
    assert list(plan(f"SELECT q.*, t.px {ASOF}").schema) == ["sym", "bid", "size", "ts", "px"]
    assert list(plan(f"SELECT t.ts, q.ts AS quoted, bid {ASOF}").schema) == [
        "ts", "quoted", "bid"]


def test_a_column_both_sides_have_must_be_qualified():
    with pytest.raises(CatalogError, match="column 'ts' is ambiguous"):
        plan(f"SELECT ts {ASOF}")
    with pytest.raises(CatalogError, match="unknown table 'x'"):
        plan(f"SELECT x.ts {ASOF}")
    with pytest.raises(CatalogError, match="unknown column 'nope' of 'q'"):
        plan(f"SELECT q.nope {ASOF}")


def test_explain_shows_each_join():
    text = explain(plan(f"SELECT * {INTERVAL}"))
    assert "IntervalJoin inner keys ['sym']=['sym'] ts-2000000us <= ts <= ts+1000000us" in text
    assert "AsofJoin inner on ts >= ts by ['sym']" in explain(plan(f"SELECT * {ASOF}"))


# -- refusals --------------------------------------------------------------------------

@pytest.mark.parametrize(("sql", "message"), [
    ("SELECT * FROM trades t RIGHT JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts",
     "RIGHT joins are not supported"),
    ("SELECT * FROM trades t FULL JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts",
     "FULL joins are not supported"),
    ("SELECT * FROM trades t CROSS JOIN quotes q", "a join needs ON"),
    ("SELECT * FROM trades t JOIN quotes q USING (sym)", "NATURAL and USING"),
    ("SELECT * FROM trades t LEFT JOIN quotes q ON t.sym = q.sym",
     "LEFT join of two streams on keys alone cannot be maintained"),
    ("SELECT * FROM trades t JOIN quotes q ON t.px > q.bid", "needs a key equality"),
    ("SELECT * FROM trades t JOIN quotes q ON t.sym = q.sym AND q.ts >= t.ts",
     "needs both bounds"),
    ("SELECT * FROM trades t ASOF JOIN quotes q ON t.sym = q.sym",
     "left event time at or after the right one"),
    ("SELECT * FROM trades t ASOF JOIN quotes q ON t.sym = q.sym AND t.ts <= q.ts",
     "left event time at or after the right one"),
    ("SELECT * FROM trades t ASOF JOIN quotes q ON t.sym = q.sym AND t.ts >= q.ts "
     "AND t.px > q.bid", "an ASOF join's ON takes key equalities"),
    ("SELECT * FROM trades t LEFT JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts "
     "AND t.px > q.bid", "a LEFT JOIN's ON condition takes key equalities"),
    ("SELECT * FROM trades t LEFT JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts "
     "AND t.px > 1", "on the left side alone"),
    ("SELECT * FROM trades t JOIN quotes q ON t.sym = q.sym "
     "AND q.ts BETWEEN t.ts + INTERVAL '2' SECOND AND t.ts", "bounds hold no time"),
    ("SELECT * FROM trades t JOIN refs r ON t.sym = r.sym AND t.ts = r.name",
     "different types"),
    ("SELECT * FROM trades t JOIN refs r ON t.sym = lower(r.name)",
     "a table's join key must be one of its columns"),
    ("SELECT * FROM refs r JOIN trades t ON t.sym = r.sym", "put the stream first"),
    ("SELECT * FROM refs", "holds static rows"),
    ("SELECT * FROM trades t JOIN totals s ON t.sym = s.sym", "its rows are updated in place"),
    ("SELECT * FROM trades t ASOF JOIN plain p ON t.sym = p.sym AND t.ts >= p.v",
     "an ASOF join needs event time on both inputs"),
    ("SELECT * FROM trades JOIN trades ON trades.sym = trades.sym", "names two relations"),
    ("SELECT * FROM trades t JOIN (SELECT * FROM quotes) ON t.sym = sym", "needs an alias"),
    ("SELECT * FROM trades t JOIN quotes q ON t.sym = q.sym AND t.qty = q.bid",
     "different types"),
    ("SELECT sym FROM trades UNION SELECT sym FROM quotes", r"UNION \(without ALL\)"),
    ("SELECT sym FROM trades INTERSECT SELECT sym FROM quotes", "INTERSECT is not supported"),
    ("SELECT sym, px FROM trades UNION ALL SELECT sym FROM quotes", "has 1 columns"),
    ("SELECT sym, qty FROM trades UNION ALL SELECT sym, bid FROM quotes",
     "column 'qty' is Int64 in the first SELECT and Float64"),
    ("SELECT sym FROM trades UNION ALL SELECT sym FROM totals", "its rows are updated"),
    ("SELECT sym FROM trades UNION ALL SELECT sym FROM quotes ORDER BY sym",
     "ORDER BY in a materialized view"),
    ("CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 minute') AS SELECT * FROM trades",
     "state_ttl bounds the state of a join of two streams on keys alone"),
    ("CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 minute') AS SELECT * FROM trades t "
     "JOIN quotes q ON t.sym = q.sym AND t.ts = q.ts", "this view has none"),
    ("CREATE MATERIALIZED VIEW v WITH (state_ttl = '1 minute') AS SELECT * FROM trades t "
     "JOIN plain p ON t.sym = p.sym", "plain' has none"),
])
def test_refused(sql, message):
    with pytest.raises((PlanError, CatalogError), match=message):
        plan(sql)


def test_state_ttl_must_be_a_positive_duration():
    for value in ("'0 seconds'", "'soon'"):
        with pytest.raises(ConfigError, match="state_ttl"):
            parse_statements(f"CREATE MATERIALIZED VIEW v WITH (state_ttl = {value}) AS "
                             "SELECT * FROM trades")
