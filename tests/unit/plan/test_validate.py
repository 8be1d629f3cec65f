"""The validation pass: each rule on hand-built plans, and each front end
refusing through it (one SQL and one LazyFrame query per rule, where the front
end can express the plan), plus the hand-built path of
``db.create_materialized_view``."""

from __future__ import annotations

import polars as pl
import pytest

import laminar_polars as lp
from laminar_polars.errors import PlanError
from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.plan import (
    Agg,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    WindowSpec,
    Wording,
    validate,
)
from laminar_polars.sql import parse_statements, plan_select
from tests.conftest import TRADES_DDL

TRADES = Scan("trades", pl.Schema({"symbol": pl.String, "price": pl.Float64,
                                   "ts": pl.Datetime("us")}), "ts")
STATIC = Scan("static", pl.Schema({"k": pl.String, "v": pl.Int64}), None)
TOTALS = Scan("totals", pl.Schema({"symbol": pl.String, "n": pl.UInt32}), None,
              appends_only=False)
RELATIONS = {scan.name: scan for scan in (TRADES, STATIC, TOTALS)}
COUNT = (Agg("n", "count_star"),)
MINUTE = WindowSpec("tumble", 60_000_000)


def keyed(input: Node, aggs: tuple[Agg, ...] = COUNT) -> KeyedAgg:
    return KeyedAgg(input, (), aggs, tuple(pl.col(a.name) for a in aggs))


def window(input: Node, spec: WindowSpec = MINUTE, emit: str = "on_window_close") -> WindowAgg:
    return WindowAgg(input, (), spec, COUNT, (pl.col("n"),), emit=emit,  # type: ignore[arg-type]
                     time_output="ts")


def drop_time(input: Node) -> RowMap:
    return RowMap(input, (Step("select", (pl.col("price"),)),))


def sql(query: str, emit: str | None = None) -> Node:
    [statement] = parse_statements(query)
    emit = getattr(statement, "emit", None) or emit
    return plan_select(statement.query, RELATIONS.__getitem__, emit)  # type: ignore[union-attr]


def frame(build, emit: str | None = None) -> Node:
    streams = {name: stream(scan) for name, scan in RELATIONS.items()}
    return plan_lazyframe(build(streams), RELATIONS.__getitem__, emit)


# -- valid plans pass, unchanged ----------------------------------------------------------

@pytest.mark.parametrize("plan", [
    TRADES,
    drop_time(TOTALS),  # row-wise steps may read updates
    keyed(TRADES),
    keyed(STATIC, (Agg("f", "first", pl.col("v"), order="arrival"),)),
    window(TRADES),
    window(TRADES, emit="on_update"),
    window(TRADES, WindowSpec("session", 1_000)),
    window(window(TRADES)),  # a closed window's rows are appended, with event time
    RowMap(window(TRADES), (Step("filter", (pl.col("n") > 1,)),)),
])
def test_valid_plans_pass(plan):
    assert validate(plan) is plan
    assert validate(plan, "on_update") is plan


# -- rule 1: emit modes ---------------------------------------------------------------------

def test_unknown_emit_mode():
    with pytest.raises(PlanError, match=r"unknown emit mode 'sometimes'; expected"):
        validate(window(TRADES), "sometimes")
    with pytest.raises(PlanError, match=r"unknown emit mode 'sometimes'; expected"):
        validate(window(TRADES, emit="sometimes"))  # a window's own mode, hand-built


def test_on_window_close_needs_a_window():
    assert validate(RowMap(window(TRADES), ()), "on_window_close")  # the window below the steps
    with pytest.raises(PlanError, match=r"^emit='on_window_close' needs a window aggregate"):
        validate(drop_time(TRADES), "on_window_close")
    with pytest.raises(PlanError, match=r"a keyed aggregate \(KeyedAgg\) without a window is a "
                                        "continuous aggregate"):
        validate(RowMap(keyed(TRADES), ()), "on_window_close")


def test_a_front_end_may_ignore_emit_on_row_wise_plans():
    ignoring = Wording(row_wise_ignores_emit=True)
    assert validate(drop_time(TRADES), "on_window_close", ignoring)
    assert validate(RowMap(keyed(TRADES), ()), "on_window_close", ignoring)
    with pytest.raises(PlanError, match=r"unknown emit mode"):
        validate(drop_time(TRADES), "sometimes", ignoring)
    with pytest.raises(PlanError, match=r"needs a window aggregate"):
        validate(keyed(TRADES), "on_window_close", ignoring)


def test_sql_emit_refusals():
    with pytest.raises(PlanError, match=r"unknown emit mode 'sometimes'"):
        sql("SELECT count(*) FROM trades", emit="sometimes")
    with pytest.raises(PlanError, match=r"^EMIT ON WINDOW CLOSE needs a window in GROUP BY "
                                        r"\(tumble, hop or session\); a GROUP BY without"):
        sql("CREATE MATERIALIZED VIEW v AS SELECT symbol, count(*) FROM trades GROUP BY symbol "
            "EMIT ON WINDOW CLOSE")
    assert isinstance(sql("SELECT price FROM trades", emit="on_window_close"), RowMap)


def test_lazyframe_emit_refusals():
    with pytest.raises(PlanError, match=r"unknown emit mode 'on_close'"):
        frame(lambda s: s["trades"], emit="on_close")
    with pytest.raises(PlanError, match=r"^emit='on_window_close' needs a windowed aggregate "
                                        r"\(group_by_dynamic\)$"):
        frame(lambda s: s["trades"].select("price"), emit="on_window_close")
    with pytest.raises(PlanError, match=r"a group_by without a window is a continuous aggregate"):
        frame(lambda s: s["trades"].group_by("symbol").agg(pl.len()), emit="on_window_close")


# -- rule 2: no aggregate over updates ------------------------------------------------------

def test_aggregating_updates():
    with pytest.raises(PlanError, match=r"^cannot aggregate over 'totals': its rows are updated"):
        validate(keyed(TOTALS))
    with pytest.raises(PlanError, match=r"^cannot aggregate over its input: its rows are updated"):
        validate(keyed(window(TRADES, emit="on_update")))
    with pytest.raises(PlanError, match=r"^cannot aggregate over its input"):
        validate(window(keyed(TRADES)))  # refused for the updates before the missing time


def test_sql_refuses_aggregating_updates():
    with pytest.raises(PlanError, match=r"^cannot aggregate over 'totals': .*EMIT ON UPDATE view"):
        sql("SELECT count(*) FROM totals")
    with pytest.raises(PlanError, match=r"^cannot aggregate over the subquery in FROM"):
        sql("SELECT count(*) FROM (SELECT symbol, count(*) AS n FROM trades GROUP BY symbol)")


def test_lazyframe_refuses_aggregating_updates():
    with pytest.raises(PlanError, match=r"^cannot aggregate over 'totals': .*'on_update' view"):
        frame(lambda s: s["totals"].group_by("symbol").agg(pl.col("n").sum()))
    with pytest.raises(PlanError, match=r"^cannot aggregate over the group_by below it"):
        frame(lambda s: s["trades"].group_by("symbol").agg(pl.len().alias("n"))
              .group_by("n").agg(pl.len()))


# -- rule 3: event time ---------------------------------------------------------------------

def test_windows_need_event_time():
    with pytest.raises(PlanError, match=r"^a tumble window needs an event-time column, and "
                                        r"'static' has none"):
        validate(window(STATIC))
    with pytest.raises(PlanError, match=r"^a tumble window needs an event-time column, and "
                                        r"its input has none"):
        validate(window(drop_time(TRADES)))


def test_first_and_last_by_event_time_need_event_time():
    first = Agg("f", "first", pl.col("price"))
    with pytest.raises(PlanError, match=r"^first orders by event time, so it needs an event-time "
                                        r"column, and its input has none"):
        validate(keyed(drop_time(TRADES), (first,)))
    assert validate(keyed(TRADES, (first,)))


def test_sql_refuses_missing_event_time():
    with pytest.raises(PlanError, match=r"^tumble\(...\) needs an event-time column, and "
                                        "'static' has none"):
        sql("SELECT count(*) FROM static GROUP BY tumble(k, INTERVAL '1' MINUTE)")
    with pytest.raises(PlanError, match=r"^last_value\(...\) orders by event time, so it needs an "
                                        "event-time column, and 'static' has none"):
        sql("SELECT last_value(v) FROM static")
    with pytest.raises(PlanError, match=r"^first_value\(...\) .* the subquery in FROM has none"):
        sql("SELECT first_value(price) FROM (SELECT price FROM trades)")


def test_lazyframe_refuses_missing_event_time():
    # (A LazyFrame's first/last order by event time only in group_by_dynamic, whose
    # window already needs the event-time column.)
    with pytest.raises(PlanError, match=r"^group_by_dynamic on 'ts' needs an event-time column, "
                                        r"and its input has none"):
        frame(lambda s: s["trades"].with_columns(ts=pl.col("ts") + pl.duration(seconds=1))
              .group_by_dynamic("ts", every="1m").agg(pl.len()))


# -- rule 4: sessions emit on window close ---------------------------------------------------

def test_sessions_do_not_emit_on_update():
    with pytest.raises(PlanError, match=r"^emit='on_update' is not supported for session "
                                        r"windows: .*; use emit='on_window_close'"):
        validate(window(TRADES, WindowSpec("session", 1_000), emit="on_update"))


def test_sql_refuses_sessions_on_update():
    # (group_by_dynamic has no session windows, so a LazyFrame cannot ask for one.)
    with pytest.raises(PlanError, match=r"^EMIT ON UPDATE is not supported for session windows: "
                                        r".*; use EMIT ON WINDOW CLOSE"):
        sql("CREATE MATERIALIZED VIEW v AS SELECT count(*) FROM trades "
            "GROUP BY session(ts, INTERVAL '1' SECOND) EMIT ON UPDATE")


# -- who calls the pass ----------------------------------------------------------------------

def test_inner_nodes_are_checked_first():
    inner = window(STATIC)  # no event time
    with pytest.raises(PlanError, match=r"'static' has none"):
        validate(keyed(inner))  # not the outer aggregate's complaint, though both fail


@pytest.mark.parametrize("module", ["laminar_polars.sql.select",
                                    "laminar_polars.frontend.translate"])
def test_front_ends_call_the_pass(module, monkeypatch):
    import importlib
    calls = []

    def spy(plan, emit=None, wording=None):
        calls.append((plan, emit))
        return plan

    monkeypatch.setattr(importlib.import_module(module), "validate", spy)
    if module.endswith("select"):
        plan = sql("SELECT count(*) FROM totals", emit="on_update")
    else:
        plan = frame(lambda s: s["totals"].group_by("symbol").agg(pl.len()), emit="on_update")
    assert calls == [(plan, "on_update")]  # once, with the finished plan; nothing else refused


def test_hand_built_plans_are_validated():
    with lp.open() as db:
        db.execute(TRADES_DDL)
        trades = db.runtime.relation("trades")
        with pytest.raises(PlanError, match=r"'on_update' is not supported for session windows"):
            db.create_materialized_view("v", window(trades, WindowSpec("session", 1_000),
                                                    emit="on_update"))
        db.execute("CREATE MATERIALIZED VIEW totals AS SELECT symbol, count(*) AS n FROM trades "
                   "GROUP BY symbol")
        with pytest.raises(PlanError, match=r"^cannot aggregate over 'totals'"):
            db.create_materialized_view("w", keyed(db.runtime.relation("totals")))
        assert "v" not in db.catalog.views and "w" not in db.catalog.views
