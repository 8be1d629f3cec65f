"""Stress: N producers (clones) x M subscribers on a tiny ring, every
backpressure mode, every push method, through a row-wise and a window view.

Every subscriber must see each accepted row at most once, every accepted row
that was neither late nor dropped exactly once, each producer's rows in the
order it pushed them, and each window exactly once, equal to Polars computing
it in batch on the rows that went through. Bounded: a few seconds per mode.
"""

from __future__ import annotations

import random
import threading

import polars as pl
import pyarrow as pa
import pytest
from conftest import read_all

import laminar_polars as lp

PRODUCERS = 6
SUBSCRIBERS = 3
ROWS_EACH = 1500
MS = 1_000
KEYS = ("a", "b", "c")

DDL = """
CREATE SOURCE events (producer INTEGER NOT NULL, seq BIGINT NOT NULL, k VARCHAR NOT NULL,
                      v BIGINT, ts TIMESTAMP NOT NULL,
                      WATERMARK FOR ts AS ts - INTERVAL '20' MILLISECOND)
    WITH (buffer_size = 64, backpressure = '{backpressure}', wait_strategy = '{wait}');
CREATE MATERIALIZED VIEW passed AS
    SELECT producer, seq, k, v * 2 AS v2, ts FROM events WHERE v >= 0;
CREATE MATERIALIZED VIEW bars AS
    SELECT k, tumble(ts, INTERVAL '50' MILLISECOND) AS ws, count(*) AS n, sum(v) AS total,
           max(seq) AS top
    FROM events GROUP BY k, tumble(ts, INTERVAL '50' MILLISECOND) EMIT ON WINDOW CLOSE
"""


def _rows(producer: int) -> list[tuple]:
    """Event time advances with seq, up to 40 ms out of order: some rows are
    late against the watermark other producers push ahead."""
    rnd = random.Random(producer)
    return [(producer, seq, rnd.choice(KEYS), rnd.randrange(100), (seq + rnd.randrange(40)) * MS)
            for seq in range(ROWS_EACH)]


def _arrow(rows: list[tuple]) -> pa.Table:
    producer, seq, k, v, ts = zip(*rows, strict=True)
    return pa.table({"producer": pa.array(producer, pa.int32()), "seq": seq, "k": k, "v": v,
                     "ts": pa.array(ts, pa.timestamp("us"))})


class Producer(threading.Thread):
    """Pushes its rows in runs of 1-8 by push, push_batch and push_arrow in
    turn; records the rows whose call returned (under 'reject' a refused call
    is retried until it is accepted)."""

    def __init__(self, src: lp.Source, producer: int) -> None:
        super().__init__(daemon=True)
        self.src, self.rows, self.accepted = src, _rows(producer), []
        self.rnd, self.error = random.Random(1000 + producer), None

    def run(self) -> None:
        try:
            i = 0
            while i < len(self.rows):
                run = self.rows[i:i + self.rnd.randint(1, 8)]
                method = self.rnd.choice(("push", "push_batch", "push_arrow"))
                while True:
                    try:
                        if method == "push":
                            for row in run:
                                self.src.push(row)
                                self.accepted.append(row)
                                run = run[1:]
                        elif method == "push_batch":
                            self.src.push_batch(run)
                            self.accepted += run
                        else:
                            self.src.push_arrow(_arrow(run))
                            self.accepted += run
                        break
                    except lp.Full:
                        continue  # nothing of the refused call went in: retry it
                i = len(self.accepted)
        except BaseException as exc:  # checked by the test
            self.error = exc


def _reader(sub: lp.Subscription, out: list, i: int) -> threading.Thread:
    def read() -> None:
        out[i] = read_all(sub)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("backpressure,wait", [("block", "park"), ("block", "spin_yield(10)"),
                                               ("drop_oldest", "spin_yield"),
                                               ("reject", "park")])
def test_many_producers_and_subscribers_exactly_once_in_order(backpressure, wait):
    db = lp.open()
    db.execute(DDL.format(backpressure=backpressure, wait=wait))
    passed: list[pl.DataFrame | None] = [None] * SUBSCRIBERS
    bars: list[pl.DataFrame | None] = [None] * SUBSCRIBERS
    readers = [_reader(db.sink("passed").subscribe(), passed, i) for i in range(SUBSCRIBERS)]
    readers += [_reader(db.sink("bars").subscribe(), bars, i) for i in range(SUBSCRIBERS)]
    db.start()
    root = db.source("events")
    producers = [Producer(root if p == 0 else root.clone(), p) for p in range(PRODUCERS)]
    for producer in producers:
        producer.start()
    for producer in producers:
        producer.join(120)
        assert not producer.is_alive(), "a producer hung"
        assert producer.error is None, producer.error
    db.stop()
    for reader in readers:
        reader.join(120)
        assert not reader.is_alive(), "a subscriber hung"
    stats = db.metrics()["sources"]["events"]

    accepted = pl.DataFrame([row for p in producers for row in p.accepted], orient="row",
                            schema=["producer", "seq", "k", "v", "ts"])
    assert accepted.height == PRODUCERS * ROWS_EACH
    first = passed[0]
    assert first is not None
    for got in passed:
        assert got is not None and got.equals(first), "subscribers of one sink differ"
    # At most once, only accepted rows, each producer's rows in push order.
    assert first.select("producer", "seq").is_unique().all()
    assert first.join(accepted, on=["producer", "seq"], how="anti").height == 0
    for (producer,), rows in first.group_by("producer"):
        assert rows["seq"].is_sorted(), f"producer {producer}'s rows out of order"
    # Every accepted row that was neither late nor dropped went through.
    assert first.height + stats["late"] + stats["dropped"] == accepted.height
    if backpressure != "drop_oldest":
        assert stats["dropped"] == 0
    assert stats["late"] > 0, "the feed is meant to produce late rows"

    # Each window once, equal to Polars in batch on the rows that went through.
    through = first.with_columns(v=pl.col("v2") // 2)
    expected = (through.with_columns(ws=pl.col("ts").dt.truncate("50ms"))
                .group_by("k", "ws").agg(n=pl.len(), total=pl.col("v").sum(),
                                         top=pl.col("seq").max()))
    for got in bars:
        assert got is not None
        assert got.select("k", "ws").is_unique().all(), "a window was emitted twice"
        assert got.sort("k", "ws").equals(
            expected.sort("k", "ws").cast(dict(got.schema)).select(got.columns))
