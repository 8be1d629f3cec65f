"""Sessions of click events: a user's clicks less than 30 s apart make one visit.

A `session` window per user: a visit ends 30 s after its last click, so it is emitted
once the watermark passes that point (the user has been quiet for 30 s of event time).
Clicks arrive up to 2 s out of order, within the source's watermark delay. At the end
the visits are checked against Polars in batch: sort each user's clicks by time, and a
click 30 s or more after the previous one starts a new visit.

Run: python examples/sessions.py [USERS]
"""

from __future__ import annotations

import datetime as dt
import sys

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

import laminar_polars as lp

PIPELINE = """
CREATE SOURCE clicks (
    user_id VARCHAR NOT NULL,
    page    VARCHAR,
    ts      TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
);
CREATE MATERIALIZED VIEW visits AS
SELECT user_id,
       session(ts, INTERVAL '30' SECOND)     AS started,
       session_end(ts, INTERVAL '30' SECOND) AS ended,
       count(*)                              AS clicks,
       count(DISTINCT page)                  AS pages,
       first_value(page)                     AS landing,
       last_value(page)                      AS exit_page
FROM clicks
GROUP BY user_id, session(ts, INTERVAL '30' SECOND)
EMIT ON WINDOW CLOSE;
CREATE SINK finished_visits FROM visits;
"""
GAP = dt.timedelta(seconds=30)
PAGES = ["/", "/pricing", "/docs", "/blog", "/signup"]


def click_stream(users: int, seed: int = 3) -> pl.DataFrame:
    """Each user's visits: a few clicks a few seconds apart, then a pause; all users'
    clicks interleaved in time order, then shuffled by up to 2 s (arrival order)."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2024, 1, 2, 9)
    rows = []
    for user in range(users):
        t = start + dt.timedelta(seconds=round(float(rng.uniform(0, 60)), 3))
        for _visit in range(int(rng.integers(1, 5))):
            for _click in range(int(rng.integers(1, 8))):
                rows.append((f"user{user:03d}", PAGES[int(rng.integers(len(PAGES)))], t))
                t += dt.timedelta(seconds=round(float(rng.uniform(1, 20)), 3))
            t += dt.timedelta(seconds=round(float(rng.uniform(40, 600)), 3))  # a pause
    # exactly 30 s after the previous click: a new visit (a session is [first, last + gap))
    edge = start + dt.timedelta(minutes=5)
    rows += [("edge", "/", edge), ("edge", "/docs", edge + GAP),
             ("edge", "/blog", edge + GAP + dt.timedelta(seconds=29.999))]
    clicks = pl.DataFrame(rows, schema={"user_id": pl.String, "page": pl.String,
                                        "ts": pl.Datetime("us")}, orient="row")
    jitter = pl.Series(rng.integers(0, 2_000, clicks.height)) * 1_000  # microseconds
    return clicks.with_columns(arrival=pl.col("ts") + pl.duration(microseconds=jitter)) \
        .sort("arrival").drop("arrival")


def expected_visits(clicks: pl.DataFrame) -> pl.DataFrame:
    """The visits in batch: per user in time order (ties by arrival), a new visit
    at the first click and wherever the gap to the previous click is >= 30 s."""
    return (
        clicks.with_row_index("arrival").sort("user_id", "ts", "arrival")
        .with_columns(visit=(pl.col("ts").diff().over("user_id").fill_null(GAP) >= GAP)
                      .cum_sum().over("user_id"))
        .group_by("user_id", "visit", maintain_order=True)
        .agg(started=pl.col("ts").min(), ended=pl.col("ts").max() + GAP, clicks=pl.len(),
             pages=pl.col("page").n_unique(), landing=pl.col("page").first(),
             exit_page=pl.col("page").last())
        .drop("visit")
    )


def main(users: int = 200) -> pl.DataFrame:
    """Push every click as it arrives, print visits as they end; return all visits."""
    db = lp.open()
    db.execute(PIPELINE)
    finished = db.sink("finished_visits").subscribe()
    db.start()

    clicks = click_stream(users)
    source = db.source("clicks")
    for row in clicks.iter_rows():  # one click at a time, in arrival order
        source.push(row)
    visits = [finished.recv(timeout=10)]  # the first visits to end
    print(f"first visits ended:\n{visits[0].head(3)}")
    db.stop()  # the input ends: every open visit ends
    visits.extend(finished)
    every = pl.concat(visits).sort("user_id", "started")

    assert db.metrics()["sources"]["clicks"]["late"] == 0  # 2 s disorder, 2 s delay
    assert_frame_equal(every, expected_visits(clicks).sort("user_id", "started"),
                       check_dtypes=False)
    summary = every.select(visits=pl.len(), clicks=pl.col("clicks").sum(),
                           mean_length=(pl.col("ended") - pl.col("started")).mean())
    print(f"{clicks.height} clicks, {users} users:\n{summary}")
    print("the visits equal Polars sessionizing the same clicks in batch")
    return every


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200)
