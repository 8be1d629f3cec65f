"""Every operator's state survives a snapshot written to Parquet and read back.

Half the rows go through one database; at a barrier every view's state is
snapshot, each frame written with ``write_parquet`` and read back (the scalars
through JSON), as a checkpoint will; a fresh database with the same views
restores it and takes the rest of the rows. What the views emitted across the
cut, and what ``db.query`` then reads, must equal an uninterrupted run, and
the batch oracle. Hypothesis picks where the cut falls.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracle import (
    ARRIVAL,
    MS,
    SECOND,
    assert_same,
    feed,
    frame,
    gen_trades,
    hop,
    last_per_key,
    read_all,
    real_rows,
    run_lazy,
    scenario,
    split_late,
    sql_agg,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp
from laminar_polars.engine.operator import State
from laminar_polars.engine.ops import grid
from laminar_polars.engine.sentinels import NO_WATERMARK

DELAY_US = 100 * MS

AGGS = """count(*) AS n, sum(qty) AS volume, min(price) AS low, avg(price) AS avg_price,
          first_value(price) AS open, last_value(qty) AS last_qty,
          count(DISTINCT qty) AS sizes"""
ORACLE = {"n": sql_agg("count_star"), "volume": sql_agg("sum", "qty"),
          "low": sql_agg("min", "price"), "avg_price": sql_agg("avg", "price"),
          "open": sql_agg("first_value", "price"), "last_qty": sql_agg("last_value", "qty"),
          "sizes": sql_agg("count_distinct", "qty")}

VIEWS_SQL = f"""
CREATE MATERIALIZED VIEW tumbling AS
    SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS ws, {AGGS}
    FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW hopping AS
    SELECT symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '1' SECOND) AS ws,
           count(*) AS n, sum(qty) AS volume
    FROM trades GROUP BY symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW sessions AS
    SELECT symbol, session(ts, INTERVAL '300' MILLISECOND) AS ss,
           session_end(ts, INTERVAL '300' MILLISECOND) AS se, count(*) AS n, sum(qty) AS volume
    FROM trades GROUP BY symbol, session(ts, INTERVAL '300' MILLISECOND);
CREATE MATERIALIZED VIEW updates AS
    SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS ws, count(*) AS n, max(price) AS high
    FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND) EMIT ON UPDATE;
CREATE MATERIALIZED VIEW totals AS
    SELECT symbol, count(*) AS n, sum(qty) AS volume, count(DISTINCT qty) AS sizes,
           last_value(price) AS last_price
    FROM trades GROUP BY symbol;
CREATE MATERIALIZED VIEW everything AS SELECT count(*) AS n, max(qty) AS top FROM trades;
CREATE MATERIALIZED VIEW big AS SELECT symbol, qty, ts FROM trades WHERE qty > 250;
CREATE MATERIALIZED VIEW busy AS SELECT symbol, ws, n FROM tumbling WHERE n >= 3;
CREATE MATERIALIZED VIEW rich AS SELECT symbol, volume FROM totals WHERE volume > 1000
"""
CLOSING = ["tumbling", "hopping", "sessions", "big", "busy", "lazy_hop"]
UPSERTING = {"updates": ["symbol", "ws"], "totals": ["symbol"], "everything": [],
             "rich": ["symbol"]}


def lazy_hop(lf: pl.LazyFrame) -> pl.LazyFrame:
    """Polars' first-row window origin: each key's earliest time is state too."""
    return lf.group_by_dynamic("ts", every="500ms", period="1s", group_by="symbol").agg(
        pl.len().alias("n"), pl.col("qty").sum().alias("volume"))


def _open() -> lp.LaminarDB:
    db = lp.open()
    db.execute(trades_ddl(delay_us=DELAY_US))
    db.execute(VIEWS_SQL)
    db.create_materialized_view("lazy_hop", lazy_hop(db.stream("trades")))
    return db


def _through_parquet(states: dict[str, list[State]], directory: Path) -> dict[str, list[State]]:
    """Every frame written as Parquet and read back, the scalars through JSON."""
    out: dict[str, list[State]] = {}
    for view, view_states in states.items():
        out[view] = []
        for i, state in enumerate(view_states):
            frames = {}
            for name, frame_ in state.frames.items():
                path = directory / f"{view}.{i}.{name}.parquet"
                frame_.write_parquet(path)
                frames[name] = pl.read_parquet(path)
            out[view].append(State(frames, json.loads(json.dumps(dict(state.scalars)))))
    return out


def _drained(db: lp.LaminarDB) -> None:
    deadline = time.monotonic() + 30
    while db.metrics()["sources"]["trades"]["pending"]:
        assert time.monotonic() < deadline, "the engine never took the rows"
        time.sleep(0.001)


def _poll_all(sub: lp.Subscription) -> list[pl.DataFrame]:
    frames = []
    while (got := sub.poll()) is not None:
        frames.append(got)
    return frames


def _run(events: list, seed: int, cut: int | None) -> tuple[dict, dict]:
    """(every view's emitted rows, every view's db.query rows at the end)."""
    db = _open()
    names = [*CLOSING, *UPSERTING]
    subs = {name: db.sink(name).subscribe() for name in names}
    emitted: dict[str, list[pl.DataFrame]] = {name: [] for name in names}
    db.start()
    if cut is not None:
        feed(db.source("trades"), events[:cut], "mixed", seed)
        _drained(db)
        views = db.runtime.views
        states = db.runtime.scheduler.at_barrier(
            lambda: {name: view.snapshot() for name, view in views.items()})
        watermark = db.source("trades").ring.watermark
        for name in names:
            emitted[name] += _poll_all(subs[name])
        db.stop()  # what it emits from here on is not read: the new database goes on
        with tempfile.TemporaryDirectory() as directory:
            states = _through_parquet(states, Path(directory))
        db = _open()
        for name, view in db.runtime.views.items():
            view.restore(states[name])
        if watermark != NO_WATERMARK:
            db.source("trades").watermark(watermark)
        subs = {name: db.sink(name).subscribe() for name in names}
        db.start()
        events = events[cut:]
    feed(db.source("trades"), events, "mixed", seed + 1)
    db.stop()
    rows = {}
    for name in names:
        tail = read_all(subs[name])
        parts = [f for f in (*emitted[name], tail) if f.width]
        rows[name] = pl.concat(parts) if parts else pl.DataFrame(schema=db.sink(name).schema)
    contents = {name: db.query(f"SELECT * FROM {name}") for name in names}
    return rows, contents


def _check(events: list, seed: int, cut: int) -> None:
    whole_rows, whole_contents = _run(events, seed, None)
    cut_rows, cut_contents = _run(events, seed, cut)
    for name in CLOSING:
        assert_same(cut_rows[name], whole_rows[name])
        assert_same(cut_contents[name], whole_contents[name])
    for name, keys in UPSERTING.items():
        finals = last_per_key(cut_rows[name], keys) if keys else cut_rows[name].tail(1)
        whole = last_per_key(whole_rows[name], keys) if keys else whole_rows[name].tail(1)
        assert_same(finals, whole)
        assert_same(cut_contents[name], whole_contents[name])
    _check_oracle(events, cut_rows, cut_contents)


def _check_oracle(events: list, rows_out: dict, contents: dict) -> None:
    """The views' emitted rows and contents against the batch oracle, on the
    rows that were not late."""
    kept, _ = split_late(events, DELAY_US)
    rows = frame(kept)
    bars = window_agg(tumble(rows, SECOND), ["symbol"], ORACLE, window_cols=["window_start"])
    assert_same(rows_out["tumbling"], bars.rename({"window_start": "ws"}), check_dtypes=False)
    hops = window_agg(hop(rows, 500 * MS, SECOND), ["symbol"],
                      {"n": sql_agg("count_star"), "volume": sql_agg("sum", "qty")},
                      window_cols=["window_start"])
    assert_same(rows_out["hopping"], hops.rename({"window_start": "ws"}), check_dtypes=False)
    totals = rows.sort("ts", ARRIVAL).group_by("symbol").agg(
        n=pl.len(), volume=sql_agg("sum", "qty"), sizes=sql_agg("count_distinct", "qty"),
        last_price=sql_agg("last_value", "price"))
    assert_same(contents["totals"], totals, check_dtypes=False)
    assert_same(rows_out["lazy_hop"], run_lazy(lazy_hop, real_rows(kept)))


def _events(seed: int, n: int) -> list:
    return scenario("late", gen_trades(n, seed, null_frac=0.1), DELAY_US, seed)


# (merged at once, held until 4096 wait): rows are merged or still pending at the cut
THRESHOLDS = [(1, 1), (1 << 12, 1 << 16)]


@pytest.mark.parametrize("absorb_rows,cap", THRESHOLDS)
@pytest.mark.parametrize("where", [0.25, 0.5, 0.9])
def test_every_operator_round_trips_through_parquet(monkeypatch, where, absorb_rows, cap):
    monkeypatch.setattr(grid, "ABSORB_ROWS", absorb_rows)
    monkeypatch.setattr(grid, "PENDING_CAP", cap)
    events = _events(11, 600)
    _check(events, 11, int(len(events) * where))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 10_000), n=st.integers(20, 300), where=st.floats(0.0, 1.0),
       thresholds=st.sampled_from(THRESHOLDS))
def test_wherever_the_cut_falls(monkeypatch, seed, n, where, thresholds):
    monkeypatch.setattr(grid, "ABSORB_ROWS", thresholds[0])
    monkeypatch.setattr(grid, "PENDING_CAP", thresholds[1])
    events = _events(seed, n)
    _check(events, seed, int(len(events) * where))
