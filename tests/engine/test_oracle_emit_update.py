"""EMIT ON UPDATE and continuous aggregates: the emitted rows form a stream of
upserts whose last row per key (and window) is the batch answer."""

from __future__ import annotations

import polars as pl
import pytest
from oracle import (
    MODES,
    MS,
    SCENARIOS,
    SECOND,
    assert_same,
    drive,
    frame,
    gen_trades,
    hop,
    last_per_key,
    read_all,
    scenario,
    split_late,
    sql_agg,
    stable_seed,
    trades_ddl,
    tumble,
    window_agg,
)

import laminar_polars as lp

DELAY_US = 100 * MS

AGGS_SQL = """count(*) AS n, count(price) AS n_price, sum(qty) AS volume, min(price) AS low,
       max(price) AS high, avg(price) AS avg_price, first_value(price) AS open,
       last_value(price) AS close, count(DISTINCT qty) AS n_qty"""
AGGS = {"n": sql_agg("count_star"), "n_price": sql_agg("count", "price"),
        "volume": sql_agg("sum", "qty"), "low": sql_agg("min", "price"),
        "high": sql_agg("max", "price"), "avg_price": sql_agg("avg", "price"),
        "open": sql_agg("first_value", "price"), "close": sql_agg("last_value", "price"),
        "n_qty": sql_agg("count_distinct", "qty")}


def feed_view(db: lp.LaminarDB, view_sql: str, kind: str, mode: str, seed: int, *,
              sinks=("v",), n: int = 400, **gen):
    db.execute(trades_ddl(DELAY_US // MS))
    db.execute(view_sql)
    rows = gen_trades(n, seed, **gen)
    events = scenario(kind, rows, DELAY_US, seed)
    kept, _ = split_late(events, DELAY_US)
    return drive(db, events, mode, seed, list(sinks), rounds=1 + seed % 4, settle_view="v",
                 delay_us=DELAY_US), frame(kept)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_tumble_emit_on_update_ends_at_batch_answer(db, kind, mode):
    out, rows = feed_view(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start,
       tumble_end(ts, INTERVAL '1' SECOND) AS window_end,
       {AGGS_SQL}
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND)
EMIT ON UPDATE""", kind, mode, stable_seed(kind, mode, "upd"))
    got = out["v"]
    expected = window_agg(tumble(rows, SECOND), ["symbol"], AGGS)
    keys = ["symbol", "window_start"]
    # no phantom windows, and the last version of each is the final answer
    assert set(got.select(keys).iter_rows()) == set(expected.select(keys).iter_rows())
    assert_same(last_per_key(got, keys), expected, check_dtypes=False)


def test_emit_on_update_emits_intermediate_versions(db):
    """Rows pushed in several micro-batches while the engine runs: a window
    receiving rows in two batches is emitted (at least) twice, and every
    version's count never goes down."""
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, tumble(ts, INTERVAL '10' SECOND) AS window_start, count(*) AS n,
       sum(qty) AS volume
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '10' SECOND) EMIT ON UPDATE""")
    sub = db.sink("v").subscribe()
    db.start()
    src = db.source("trades")
    rows = gen_trades(100, 5, symbols=("A",), steps_ms=(10,), jump_frac=0.0, null_frac=0.0)
    src.push_batch(rows[:50])
    first = sub.recv(timeout=30)
    while first.height == 0 or first["n"].max() < 50:
        first = pl.concat([first, sub.recv(timeout=30)])
    src.push_batch(rows[50:])
    db.stop()
    rest = read_all(sub)
    versions = pl.concat([first, rest])
    assert versions.height >= 2
    assert versions["n"].to_list() == sorted(versions["n"].to_list())
    assert versions["n"][-1] == 100
    assert versions["volume"][-1] == sum(r[2] for r in rows)


def test_hop_emit_on_update(db):
    out, rows = feed_view(db, """
CREATE MATERIALIZED VIEW v AS
SELECT symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND) AS window_start,
       count(*) AS n, sum(qty) AS volume, last_value(price) AS close
FROM trades GROUP BY symbol, hop(ts, INTERVAL '500' MILLISECOND, INTERVAL '2' SECOND)
EMIT ON UPDATE""", "late", "mixed", 61, n=300)
    expected = window_agg(hop(rows, 500 * MS, 2 * SECOND), ["symbol"],
                          {"n": sql_agg("count_star"), "volume": sql_agg("sum", "qty"),
                           "close": sql_agg("last_value", "price")},
                          window_cols=["window_start"])
    assert_same(last_per_key(out["v"], ["symbol", "window_start"]), expected,
                check_dtypes=False)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", SCENARIOS)
def test_continuous_sql_aggregate_upserts(db, kind, mode):
    out, rows = feed_view(db, f"""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, {AGGS_SQL}, max(ts) AS last_ts
FROM trades GROUP BY symbol""", kind, mode, stable_seed(kind, mode, "cont"),
        symbols=tuple("ABCDEFG"))
    got = out["v"]
    expected = (rows.sort("ts", "__arrival").group_by("symbol", maintain_order=True)
                .agg(**AGGS, last_ts=pl.col("ts").max()))
    assert_same(last_per_key(got, ["symbol"]), expected, check_dtypes=False)
    assert got.schema["last_ts"] == pl.Datetime("us")


def test_continuous_two_keys_with_null_key_values(db):
    """GROUP BY two columns, one nullable: NULL is a group of its own."""
    out, rows = feed_view(db, """
CREATE MATERIALIZED VIEW v AS
SELECT symbol, qty, count(*) AS n, sum(price) AS turnover, min(ts) AS first_ts
FROM trades GROUP BY symbol, qty""", "late", "mixed", 67, null_frac=0.2)
    expected = rows.group_by("symbol", "qty").agg(
        n=sql_agg("count_star"), turnover=sql_agg("sum", "price"), first_ts=pl.col("ts").min())
    assert expected["qty"].null_count() > 0
    assert_same(last_per_key(out["v"], ["symbol", "qty"]), expected, check_dtypes=False)


@pytest.mark.parametrize("kind", SCENARIOS)
def test_continuous_changelog_sink_ops(db, kind):
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW v AS
SELECT symbol, count(*) AS n, sum(qty) AS volume, last_value(price) AS close
FROM trades GROUP BY symbol""")
    db.create_sink("changes", "v", changelog=True)
    rows = gen_trades(300, 71, symbols=tuple("ABCD"))
    events = scenario(kind, rows, DELAY_US, 71)
    kept, _ = split_late(events, DELAY_US)
    out = drive(db, events, "mixed", 71, ["changes", "v"])
    changes = out["changes"]
    assert changes.columns == ["symbol", "n", "volume", "close", "op"]
    assert out["v"].columns == ["symbol", "n", "volume", "close"]
    firsts = changes.unique(subset=["symbol"], keep="first", maintain_order=True)
    assert firsts["op"].to_list() == ["insert"] * 4
    assert (changes["op"] == "insert").sum() == 4
    assert set(changes["op"]) <= {"insert", "update"}
    expected = (frame(kept).sort("ts", "__arrival").group_by("symbol")
                .agg(n=sql_agg("count_star"), volume=sql_agg("sum", "qty"),
                     close=sql_agg("last_value", "price")))
    assert_same(last_per_key(changes.drop("op"), ["symbol"]), expected, check_dtypes=False)
    # the plain sink got the very same rows, without op
    assert_same(out["v"], changes.drop("op"), check_dtypes=True)


def test_windowed_changelog_ops(db):
    """Windowed EMIT ON UPDATE with a changelog sink: 'insert' on a key/window's
    first row, 'update' after; EMIT ON WINDOW CLOSE only ever inserts."""
    db.execute(trades_ddl(100))
    db.execute("""
CREATE MATERIALIZED VIEW upd AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, count(*) AS n
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND) EMIT ON UPDATE;
CREATE MATERIALIZED VIEW fin AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, count(*) AS n
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND) EMIT ON WINDOW CLOSE""")
    db.create_sink("upd_changes", "upd", changelog=True)
    db.create_sink("fin_changes", "fin", changelog=True)
    rows = gen_trades(400, 73)
    events = scenario("late", rows, DELAY_US, 73)
    kept, _ = split_late(events, DELAY_US)
    out = drive(db, events, "row", 73, ["upd_changes", "fin_changes"], start=True)
    keys = ["symbol", "window_start"]
    upd = out["upd_changes"]
    firsts = upd.with_row_index("i").unique(subset=keys, keep="first")
    assert set(upd.with_row_index("i").filter(pl.col("op") == "insert")["i"]) == set(
        firsts["i"])
    expected = window_agg(tumble(frame(kept), SECOND), ["symbol"],
                          {"n": sql_agg("count_star")}, window_cols=["window_start"])
    assert_same(last_per_key(upd.drop("op"), keys), expected, check_dtypes=False)
    fin = out["fin_changes"]
    assert set(fin["op"]) == {"insert"}
    assert_same(fin.drop("op"), expected, check_dtypes=False)
