"""``db.query`` while four producers push: every answer is the views' state at
one barrier between micro-batches, never a torn one.

Each row has a unique ``uid``, so in any consistent state ``count(*)`` equals
``count(DISTINCT uid)`` in every group; no (key, window) appears twice; and a
continuous aggregate's total count equals the rows a row-wise view holds,
since both took the same batches. Queries used to read operator state from the
user's thread while the engine changed it (an IndexError in a distinct count's
first batch, count(*) != count(DISTINCT x), a just-closed window twice).
"""

from __future__ import annotations

import threading

import polars as pl

import laminar_polars as lp

PRODUCERS = 4
ROWS_EACH = 3_000

DDL = """
CREATE SOURCE events (p INTEGER NOT NULL, uid BIGINT NOT NULL, k VARCHAR NOT NULL,
                      ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '20' MILLISECOND)
    WITH (buffer_size = 256);
CREATE MATERIALIZED VIEW totals AS
    SELECT k, count(*) AS n, count(DISTINCT uid) AS d FROM events GROUP BY k;
CREATE MATERIALIZED VIEW live AS
    SELECT k, tumble(ts, INTERVAL '50' MILLISECOND) AS ws, count(*) AS n,
           count(DISTINCT uid) AS d
    FROM events GROUP BY k, tumble(ts, INTERVAL '50' MILLISECOND) EMIT ON UPDATE;
CREATE MATERIALIZED VIEW bars AS
    SELECT k, tumble(ts, INTERVAL '50' MILLISECOND) AS ws, count(*) AS n,
           count(DISTINCT uid) AS d
    FROM events GROUP BY k, tumble(ts, INTERVAL '50' MILLISECOND);
CREATE MATERIALIZED VIEW seen AS SELECT uid, k FROM events
"""


def _check(answer: dict[str, pl.DataFrame]) -> None:
    for name in ("totals", "live", "bars"):
        frame = answer[name]
        assert (frame["n"] == frame["d"]).all(), f"{name}: count(*) != count(DISTINCT uid)"
    for name in ("live", "bars"):
        assert answer[name].select("k", "ws").is_unique().all(), f"{name}: a window twice"
    assert answer["seen"]["uid"].is_unique().all()
    assert int(answer["totals"]["n"].sum() or 0) == answer["seen"].height, "torn across views"


def _answer(db: lp.LaminarDB) -> dict[str, pl.DataFrame]:
    """One query reading all four views: one barrier for all of them."""
    both = db.query("""
        SELECT 'totals' AS view, k, NULL AS ws, n, d, NULL AS uid FROM totals
        UNION ALL SELECT 'live', k, ws, n, d, NULL FROM live
        UNION ALL SELECT 'bars', k, ws, n, d, NULL FROM bars
        UNION ALL SELECT 'seen', k, NULL, NULL, NULL, uid FROM seen""")
    return {name: both.filter(pl.col("view") == name)
            for name in ("totals", "live", "bars", "seen")}


def test_queries_see_one_barrier_while_producers_push():
    db = lp.open()
    db.execute(DDL)
    db.start()
    root = db.source("events")
    handles = [root, *(root.clone() for _ in range(PRODUCERS - 1))]
    errors: list[BaseException] = []

    def produce(p: int) -> None:
        try:
            for seq in range(ROWS_EACH):
                uid = p * 1_000_000 + seq
                row = (p, uid, "abcdefg"[uid % 7], seq * 1_000)
                if seq % 3:
                    handles[p].push(row)
                else:
                    handles[p].push_batch([row])
        except BaseException as exc:  # checked below
            errors.append(exc)

    producers = [threading.Thread(target=produce, args=(p,)) for p in range(PRODUCERS)]
    for thread in producers:
        thread.start()
    answers = 0
    while any(thread.is_alive() for thread in producers) or answers < 20:
        _check(_answer(db))
        answers += 1
    for thread in producers:
        thread.join()
    assert not errors, errors
    db.stop()
    final = _answer(db)
    _check(final)
    assert final["seen"].height == final["totals"]["n"].sum()
    assert answers >= 20
