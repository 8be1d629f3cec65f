"""Joins survive a crash: their kept rows on each side are checkpointed with the
rest of the state and the log replays what came after, so recovery plus the
rest of the feed equals Polars in batch over every row (here all on time, in
event order per source, the two sources interleaved)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
from helpers import PACKAGE_ROOT, SECOND
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import laminar_polars as lp

DDL = """
CREATE SOURCE trades (sym VARCHAR NOT NULL, px DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
CREATE SOURCE quotes (sym VARCHAR NOT NULL, bid DOUBLE, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW priced WITH (retention = 1000000) AS
    SELECT t.sym, t.ts, t.px, q.bid, q.ts AS quoted
    FROM trades t ASOF LEFT JOIN quotes q ON t.sym = q.sym AND t.ts >= q.ts
        AND t.ts - q.ts <= INTERVAL '90' MILLISECOND;
CREATE MATERIALIZED VIEW near WITH (retention = 1000000) AS
    SELECT t.sym, t.ts, t.px, q.bid FROM trades t JOIN quotes q ON t.sym = q.sym
        AND q.ts BETWEEN t.ts - INTERVAL '150' MILLISECOND AND t.ts + INTERVAL '150' MILLISECOND;
CREATE MATERIALIZED VIEW matched AS
    SELECT sym, tumble(ts, INTERVAL '1' SECOND) AS ws, count(*) AS n, sum(bid) AS bids
    FROM near GROUP BY sym, tumble(ts, INTERVAL '1' SECOND);
CREATE MATERIALIZED VIEW prices WITH (retention = 1000000) AS
    SELECT sym, px AS price, ts FROM trades UNION ALL SELECT sym, bid, ts FROM quotes
"""
VIEWS = ("priced", "near", "matched", "prices")
ARRIVALS = 600  # one row per arrival, alternating sources in runs


def arrival(i: int) -> tuple[str, tuple]:
    """Arrival ``i``: a trade or a quote, in event order per source, the sources
    interleaved in runs of three. Step n of a symbol: a trade at 1 s + n*100 ms,
    a quote 5 ms before it, or (every fifth) 55 ms after it, which leaves the
    next trade's newest quote too stale for the ASOF join (105 ms > 90 ms)."""
    sym = "AB"[i % 2]
    n = (i // 6) * 3 + i % 3
    at = SECOND + n * 100_000
    if (i // 3) % 2 == 0:
        return "trades", (sym, float(i), at)
    return "quotes", (sym, float(-i), at + (55_000 if n % 5 == 4 else -5_000))


def open_db(data_dir: Path) -> lp.LaminarDB:
    db = lp.open(lp.Config(data_dir=data_dir, checkpoint_interval="1 hour", wal_mode="sync"))
    db.execute(DDL)
    return db


CRASH = """
import os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_recovery_joins import arrival, open_db
db = open_db(Path({data_dir!r}))
db.start()
checkpoints = set({checkpoints!r})
for i in range({crash!r}):
    source, row = arrival(i)
    db.source(source).push(row)
    if i + 1 in checkpoints:
        db.checkpoint()
os._exit(0)  # a crash once every push returned: no stop(), no final checkpoint
"""


def _crash_after(data_dir: Path, crash: int, checkpoints: list[int]) -> None:
    code = textwrap.dedent(CRASH.format(tests=str(Path(__file__).parent), data_dir=str(data_dir),
                                        crash=crash, checkpoints=checkpoints))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _frames() -> tuple[pl.DataFrame, pl.DataFrame]:
    rows: dict[str, list[tuple]] = {"trades": [], "quotes": []}
    for i in range(ARRIVALS):
        source, row = arrival(i)
        rows[source].append(row)
    trades = pl.DataFrame(rows["trades"], schema={"sym": pl.String, "px": pl.Float64,
                                                  "ts": pl.Int64}, orient="row")
    quotes = pl.DataFrame(rows["quotes"], schema={"sym": pl.String, "bid": pl.Float64,
                                                  "ts": pl.Int64}, orient="row")
    as_time = pl.col("ts").cast(pl.Datetime("us"))
    return trades.with_columns(as_time).sort("ts"), quotes.with_columns(as_time).sort("ts")


def oracle() -> dict[str, pl.DataFrame]:
    trades, quotes = _frames()
    priced = trades.join_asof(quotes.with_columns(quoted=pl.col("ts")), on="ts", by="sym",
                              strategy="backward", tolerance="90ms",
                              check_sortedness=False)
    near = trades.join(quotes, on="sym", suffix="_q").filter(
        (pl.col("ts_q") - pl.col("ts")).abs() <= dt_ms(150)).select("sym", "ts", "px", "bid")
    matched = (near.group_by("sym", ws=pl.col("ts").dt.truncate("1s"))
               .agg(n=pl.len(), bids=pl.col("bid").sum()))
    prices = pl.concat([trades.rename({"px": "price"}).select("sym", "price", "ts"),
                        quotes.rename({"bid": "price"}).select("sym", "price", "ts")])
    return {"priced": priced.select("sym", "ts", "px", "bid", "quoted"), "near": near,
            "matched": matched, "prices": prices}


def dt_ms(ms: int) -> pl.Expr:
    return pl.duration(milliseconds=ms)


def _same(got: pl.DataFrame, expected: pl.DataFrame) -> bool:
    got = got.select(expected.columns)
    return got.sort(got.columns).equals(expected.sort(expected.columns))


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                              HealthCheck.function_scoped_fixture])
@given(crash=st.integers(1, ARRIVALS - 1), points=st.lists(st.integers(1, ARRIVALS - 1),
                                                            max_size=3))
@example(crash=250, points=[102])  # just after quotes: both sides hold rows
@example(crash=401, points=[150, 400])
@example(crash=599, points=[598])
def test_join_views_after_a_crash_equal_an_uninterrupted_run(tmp_path_factory, crash, points):
    data_dir = tmp_path_factory.mktemp("state")
    _crash_after(data_dir, crash, sorted(p for p in points if p <= crash))
    db = open_db(data_dir)
    db.start()
    for i in range(crash, ARRIVALS):
        source, row = arrival(i)
        db.source(source).push(row)
    db.stop()
    expected = oracle()
    for name in VIEWS:
        got = db.query(f"SELECT * FROM {name}")
        assert _same(got, expected[name]), name
    assert db.metrics()["durability"]["replayed_rows"] == crash - max(
        [p for p in points if p <= crash], default=0)


def test_the_oracle_is_not_empty():
    """Every view has rows to compare (a guard on the test above)."""
    expected = oracle()
    assert all(expected[name].height > 20 for name in VIEWS), {
        name: frame.height for name, frame in expected.items()}
    assert expected["priced"]["bid"].null_count() > 0  # stale quotes: unmatched rows too
