"""The Nexmark queries that join (q3, q5, q7, q8, q13, q20), on person, auction
and bid sources arriving interleaved, out of order and with late rows,
against Polars in batch on the rows each source kept. q5 runs both as views
stacked on a view (a join of a view with a view over it) and inline, with its
hop counts computed twice in one plan; q8 is a window join of two tumble
subqueries; q13 a lookup of a side table on an expression key."""

from __future__ import annotations

import datetime as dt
import random

import polars as pl
import pyarrow as pa
import pytest
from oracle import (
    MODES,
    MS,
    SECOND,
    assert_same,
    at,
    feed,
    from_micros,
    hop,
    interval,
    read_all,
    shuffle_within,
    split_late,
    stable_seed,
    to_micros,
    tumble,
)

import laminar_polars as lp

DELAY_US = 200 * MS
SCHEMAS = {
    "person": {"id": pl.Int64, "name": pl.String, "state": pl.String, "ts": pl.Datetime("us")},
    "auction": {"id": pl.Int64, "seller": pl.Int64, "category": pl.Int64,
                "ts": pl.Datetime("us")},
    "bid": {"auction": pl.Int64, "bidder": pl.Int64, "price": pl.Int64, "ts": pl.Datetime("us")},
}
SQL_TYPES = {pl.Int64: "BIGINT", pl.String: "VARCHAR"}
ARROW = {name: pa.schema({c: pa.timestamp("us") if c == "ts" else
                          pa.string() if t == pl.String else pa.int64()
                          for c, t in schema.items()}) for name, schema in SCHEMAS.items()}

HOP = "INTERVAL '2' SECOND, INTERVAL '10' SECOND"
AUCTION_BIDS = f"""SELECT auction, count(*) AS num, hop(ts, {HOP}) AS starttime
    FROM bid GROUP BY auction, hop(ts, {HOP})"""
VIEWS = f"""
CREATE MATERIALIZED VIEW q3 AS
    SELECT P.name, P.state, A.id
    FROM auction AS A JOIN person AS P ON A.seller = P.id
    WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA');
CREATE MATERIALIZED VIEW auction_bids AS {AUCTION_BIDS};
CREATE MATERIALIZED VIEW max_bids AS
    SELECT max(num) AS maxn, tumble(starttime, INTERVAL '2' SECOND) AS starttime_c
    FROM auction_bids GROUP BY tumble(starttime, INTERVAL '2' SECOND);
CREATE MATERIALIZED VIEW q5 AS
    SELECT AB.auction, AB.num, AB.starttime
    FROM auction_bids AS AB JOIN max_bids AS MB
      ON AB.starttime = MB.starttime_c AND AB.num >= MB.maxn;
CREATE MATERIALIZED VIEW q5_inline AS
    SELECT AB.auction, AB.num, AB.starttime
    FROM ({AUCTION_BIDS}) AS AB
    JOIN (SELECT max(num) AS maxn, tumble(starttime, INTERVAL '2' SECOND) AS starttime_c
          FROM ({AUCTION_BIDS}) AS CB GROUP BY tumble(starttime, INTERVAL '2' SECOND)) AS MB
      ON AB.starttime = MB.starttime_c AND AB.num >= MB.maxn;
CREATE MATERIALIZED VIEW q7 AS
    SELECT B.auction, B.price, B.bidder, B.ts
    FROM bid B JOIN (SELECT max(price) AS maxprice,
                            tumble_end(ts, INTERVAL '10' SECOND) AS window_end
                     FROM bid GROUP BY tumble(ts, INTERVAL '10' SECOND)) AS M
      ON B.price = M.maxprice
     AND B.ts BETWEEN M.window_end - INTERVAL '10' SECOND AND M.window_end;
CREATE MATERIALIZED VIEW q8 AS
    SELECT P.id, P.name, P.starttime
    FROM (SELECT id, name, tumble(ts, INTERVAL '10' SECOND) AS starttime,
                 tumble_end(ts, INTERVAL '10' SECOND) AS endtime
          FROM person GROUP BY id, name, tumble(ts, INTERVAL '10' SECOND)) AS P
    JOIN (SELECT seller, tumble(ts, INTERVAL '10' SECOND) AS starttime,
                 tumble_end(ts, INTERVAL '10' SECOND) AS endtime
          FROM auction GROUP BY seller, tumble(ts, INTERVAL '10' SECOND)) AS A
      ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime;
CREATE MATERIALIZED VIEW q13 AS
    SELECT B.auction, B.bidder, B.price, B.ts, S.value
    FROM bid B JOIN side_input S ON B.auction % 10 = S.key;
CREATE MATERIALIZED VIEW q20 AS
    SELECT B.auction, B.price, A.seller, A.category
    FROM bid B JOIN auction A ON B.auction = A.id WHERE A.category = 10
"""
NAMES = ["q3", "q5", "q5_inline", "q7", "q8", "q13", "q20"]
SIDE_INPUT = pl.DataFrame({"key": list(range(0, 10, 2)),
                           "value": [f"v{k}" for k in range(0, 10, 2)]})


def _ddl(name: str) -> str:
    columns = ", ".join(f"{c} {'TIMESTAMP NOT NULL' if c == 'ts' else SQL_TYPES[t]}"
                        for c, t in SCHEMAS[name].items())
    return (f"CREATE SOURCE {name} ({columns}, WATERMARK FOR ts AS ts - "
            f"{interval(DELAY_US)})")


def _events(seed: int, late: bool) -> dict[str, list[tuple]]:
    """People and auctions appearing over 30 s, bids on them; each source out of
    order within the delay, and (``late``) a few rows behind its watermark."""
    rng = random.Random(seed)
    rows: dict[str, list[tuple]] = {"person": [], "auction": [], "bid": []}
    for i in range(1, 31):
        rows["person"].append((i, f"p{i}", rng.choice(["OR", "ID", "CA", "WA", "NY"]),
                               at(rng.randrange(30_000) * MS)))
    for i in range(1, 61):
        rows["auction"].append((i, rng.randrange(1, 35), rng.choice([10, 10, 11, 12]),
                                at(rng.randrange(30_000) * MS)))
    for _ in range(500):
        rows["bid"].append((rng.randrange(1, 61), rng.randrange(1, 30), rng.randrange(1, 40),
                            at(rng.randrange(30_000) * MS)))
    out = {}
    for name, source_rows in rows.items():
        source_rows.sort(key=lambda r: r[3])
        events = shuffle_within(source_rows, DELAY_US, seed)
        if late:
            for _ in range(6):
                pos = rng.randrange(1, len(events))
                high = max(to_micros(r[3]) for r in events[:pos]) - DELAY_US
                copy = events[rng.randrange(pos)]
                events.insert(pos, (*copy[:3], from_micros(high - rng.choice((1, 500 * MS)))))
        out[name] = events
    return out


def _kept(events: list[tuple], name: str) -> pl.DataFrame:
    kept, _ = split_late(events, DELAY_US)
    return pl.DataFrame([list(r) for r in kept], schema=SCHEMAS[name], orient="row")


def _expected(events: dict[str, list[tuple]]) -> dict[str, pl.DataFrame]:
    person, auction, bid = (_kept(events[n], n) for n in ("person", "auction", "bid"))
    q3 = (auction.filter(pl.col("category") == 10)
          .join(person.filter(pl.col("state").is_in(["OR", "ID", "CA"])),
                left_on="seller", right_on="id", suffix="_p")
          .select("name", "state", "id"))
    hops = hop(bid, 2 * SECOND, 10 * SECOND).group_by("auction", "window_start").agg(
        num=pl.len())
    top = hops.group_by("window_start").agg(maxn=pl.col("num").max())
    q5 = (hops.join(top, on="window_start").filter(pl.col("num") >= pl.col("maxn"))
          .select("auction", "num", pl.col("window_start").alias("starttime")))
    maxima = tumble(bid, 10 * SECOND).group_by("window_end").agg(maxprice=pl.col("price").max())
    q7 = bid.join_where(maxima, pl.col("price") == pl.col("maxprice"),
                        pl.col("ts") >= pl.col("window_end") - dt.timedelta(seconds=10),
                        pl.col("ts") <= pl.col("window_end")).select(
        "auction", "price", "bidder", "ts")
    people = tumble(person, 10 * SECOND).select("id", "name", "window_start").unique()
    sellers = tumble(auction, 10 * SECOND).select("seller", "window_start").unique()
    q8 = people.join(sellers, left_on=["id", "window_start"],
                     right_on=["seller", "window_start"]).select(
        "id", "name", pl.col("window_start").alias("starttime"))
    q13 = bid.with_columns(key=pl.col("auction") % 10).join(SIDE_INPUT, on="key").select(
        "auction", "bidder", "price", "ts", "value")
    q20 = bid.join(auction.filter(pl.col("category") == 10), left_on="auction",
                   right_on="id").select("auction", "price", "seller", "category")
    return {"q3": q3, "q5": q5, "q5_inline": q5, "q7": q7, "q8": q8, "q13": q13, "q20": q20}


def _run(events: dict[str, list[tuple]], mode: str, seed: int, workers: int
         ) -> dict[str, pl.DataFrame]:
    db = lp.open(lp.Config(workers=workers))
    db.execute(";".join(_ddl(name) for name in SCHEMAS))
    db.register_table("side_input", SIDE_INPUT)
    db.execute(VIEWS)
    subs = {name: db.sink(name).subscribe() for name in NAMES}
    if seed % 2:
        db.start()
    rng = random.Random(seed)
    position = dict.fromkeys(events, 0)
    while any(position[n] < len(events[n]) for n in events):
        name = rng.choice([n for n in events if position[n] < len(events[n])])
        size = rng.randint(1, 40)
        chunk = events[name][position[name]:position[name] + size]
        position[name] += len(chunk)
        feed(db.source(name), chunk, mode, rng.randrange(1000), arrow_schema=ARROW[name])
    db.stop()
    return {name: read_all(sub) for name, sub in subs.items()}


@pytest.mark.parametrize(("mode", "late", "workers"),
                         [(mode, i % 2 == 0, 1 + i % 2) for i, mode in enumerate(MODES)])
def test_nexmark_joins_match_polars_in_batch(mode, late, workers):
    seed = stable_seed("nexmark", mode, late, workers)
    events = _events(seed, late)
    got = _run(events, mode, seed, workers)
    for name, want in _expected(events).items():
        try:
            assert_same(got[name], want)
        except AssertionError as error:
            raise AssertionError(f"{name}: {error}") from None
