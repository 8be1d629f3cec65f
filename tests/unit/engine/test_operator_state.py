"""Each operator, driven directly, cut mid-stream with its state in every part:
rows still pending in a window operator, open sessions, distinct pairs, Polars'
first-row origins, a keyed state with both its cold and hot part, a history
trimmed by retention, every join's two sides (a LEFT join's matched marks, an
ASOF join's pending left rows), split joins restored into another number of
copies. The snapshot goes through Parquet into a fresh operator, which must
then emit exactly what the uninterrupted one does."""

from __future__ import annotations

import json
import random
from concurrent.futures import ThreadPoolExecutor

import polars as pl
import pytest

from laminar_polars.config import Retention
from laminar_polars.engine.keyed_state import KeyedState
from laminar_polars.engine.operator import Delta, Operator, State
from laminar_polars.engine.ops import grid
from laminar_polars.engine.ops.asof import AsofJoinOperator
from laminar_polars.engine.ops.equi import EquiJoinOperator
from laminar_polars.engine.ops.grid import GridWindows
from laminar_polars.engine.ops.history import History
from laminar_polars.engine.ops.interval import IntervalJoinOperator
from laminar_polars.engine.ops.keyed import KeyedAggregate
from laminar_polars.engine.ops.session import SessionWindows
from laminar_polars.engine.ops.sharded import Sharded
from laminar_polars.engine.sentinels import CLOSED_WATERMARK
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    KeyedAgg,
    Scan,
    WindowAgg,
    WindowSpec,
)

SCHEMA = pl.Schema({"k": pl.String, "v": pl.Int64, "ts": pl.Datetime("us")})
SCAN = Scan("s", SCHEMA, "ts")
AGGS = (Agg("n", "count_star"), Agg("total", "sum", pl.col("v")),
        Agg("first_v", "first", pl.col("v")), Agg("last_v", "last", pl.col("v")),
        Agg("distinct_v", "n_unique", pl.col("v")))
WINDOW_OUT = (pl.col("k"), pl.col(WINDOW_START).alias("ws"), pl.col(WINDOW_END).alias("we"),
              *[pl.col(a.name) for a in AGGS])
KEYED_OUT = (pl.col("k"), *[pl.col(a.name) for a in AGGS])


def _batches(seed: int, n: int = 400) -> list[pl.DataFrame]:
    """Rows ~1 ms apart, up to 50 ms out of order, in batches of 1 to 40 rows."""
    rnd = random.Random(seed)
    rows = [(rnd.choice("abc"), rnd.randrange(6), i * 1000 + rnd.randrange(50_000))
            for i in range(n)]
    batches, i = [], 0
    while i < n:
        size = rnd.randint(1, 40)
        chunk = rows[i:i + size]
        batches.append(pl.DataFrame(chunk, schema=["k", "v", "ts"], orient="row")
                       .with_columns(pl.col("ts").cast(pl.Datetime("us"))))
        i += size
    return batches


def _through_parquet(state: State, tmp_path) -> State:
    frames = {}
    for name, frame in state.frames.items():
        path = tmp_path / f"{name}.parquet"
        frame.write_parquet(path)
        frames[name] = pl.read_parquet(path)
    return State(frames, json.loads(json.dumps(dict(state.scalars))))


def _drive(op: Operator, batches: list[pl.DataFrame], delay_us: int = 100_000) -> list:
    """Feed batches with the watermark a source would give them (max - delay);
    returns every emitted frame."""
    out = []
    high = None
    for batch in batches:
        got = op.on_batch(0, Delta(batch))
        if got is not None and got.height:
            out.append(got.rows)
        top = batch["ts"].dt.epoch("us").max()
        high = top if high is None else max(high, top)
        released = op.on_watermark(high - delay_us)
        if released is not None and released.height:
            out.append(released.rows)
        op.settle()
    return out


def _finish(op: Operator) -> list:
    released = op.on_watermark(CLOSED_WATERMARK)
    op.settle()
    return [] if released is None or not released.height else [released.rows]


def _rows(frames: list[pl.DataFrame]) -> pl.DataFrame:
    return pl.concat(frames) if frames else pl.DataFrame()


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.sort(frame.columns) if frame.width else frame


def _round_trip(make, tmp_path, cut: int, seed: int, *, contents: bool = False) -> None:
    batches = _batches(seed)
    whole = make()
    expected = _drive(whole, batches) + _finish(whole)
    first = make()
    got = _drive(first, batches[:cut])
    state = first.snapshot()
    assert state.frames, "nothing to snapshot at the cut"
    second = make()
    second.restore(_through_parquet(state, tmp_path))
    if contents:  # a snapshot's contents read the same before and after Parquet
        assert _sorted(second.contents(second.snapshot())).equals(
            _sorted(first.contents(state)))
    got += _drive(second, batches[cut:])
    got += _finish(second)
    assert _sorted(_rows(got)).equals(_sorted(_rows(expected)))


@pytest.mark.parametrize("cut", [3, 17, 40])
@pytest.mark.parametrize("spec", [WindowSpec("tumble", 100_000),
                                  WindowSpec("hop", 300_000, 100_000),
                                  WindowSpec("hop", 300_000, 100_000, origin="first_row")],
                         ids=["tumble", "hop", "hop-first-row"])
def test_grid_windows_with_pending_rows(monkeypatch, tmp_path, spec, cut):
    monkeypatch.setattr(grid, "ABSORB_ROWS", 1 << 12)  # rows stay pending until a close
    monkeypatch.setattr(grid, "PENDING_CAP", 1 << 16)
    node = WindowAgg(SCAN, ("k",), spec, AGGS, WINDOW_OUT)

    def make() -> GridWindows:
        return GridWindows(node)

    probe = make()
    _drive(probe, _batches(5)[:cut])
    assert probe.pending_rows > 0, "the cut must leave pending rows"
    _round_trip(make, tmp_path, cut, seed=5)


@pytest.mark.parametrize("cut", [5, 30])
def test_update_windows_keep_their_closed_rows(tmp_path, cut):
    node = WindowAgg(SCAN, ("k",), WindowSpec("tumble", 100_000), AGGS, WINDOW_OUT,
                     emit="on_update", time_output="ws")

    def make() -> GridWindows:
        return GridWindows(node, Retention(rows=50))

    _round_trip(make, tmp_path, cut, seed=6, contents=True)


@pytest.mark.parametrize("cut", [4, 25])
def test_session_windows(tmp_path, cut):
    aggs = AGGS[:4]  # sessions: count, sum, first, last
    out = (pl.col("k"), pl.col(WINDOW_START).alias("ss"), *[pl.col(a.name) for a in aggs])
    node = WindowAgg(SCAN, ("k",), WindowSpec("session", 20_000), aggs, out)
    _round_trip(lambda: SessionWindows(node), tmp_path, cut, seed=7)


@pytest.mark.parametrize("cut", [2, 12, 30])
@pytest.mark.parametrize("keys", [("k",), ()], ids=["keyed", "global"])
def test_keyed_aggregate_with_cold_and_hot_state(monkeypatch, tmp_path, keys, cut):
    monkeypatch.setattr(KeyedState, "__init__", _small_hot(KeyedState.__init__))
    out = KEYED_OUT if keys else KEYED_OUT[1:]
    node = KeyedAgg(SCAN, keys, AGGS, out)

    def make() -> KeyedAggregate:
        return KeyedAggregate(node)

    probe = make()
    _drive(probe, _batches(8)[:cut])
    if keys and cut > 2:
        parts = probe.partials.parts()
        assert parts[0] is not None and probe.distinct[0].parts()[0] is not None, \
            "the cut must leave a cold part (after a compaction)"
    _round_trip(make, tmp_path, cut, seed=8, contents=True)


def _small_hot(init):
    def small(self, keys, hot_limit=2):  # compactions every few rows
        init(self, keys, 2)
    return small


@pytest.mark.parametrize("retention", [Retention(rows=30), Retention(time_us=80_000),
                                       Retention()], ids=["rows", "time", "all"])
def test_history(tmp_path, retention):
    def make() -> History:
        return History(retention, "ts")

    _round_trip(make, tmp_path, 20, seed=9, contents=True)


# -- joins: two inputs, each with its own watermark ------------------------------------

RIGHT_SCHEMA = pl.Schema({"k": pl.String, "w": pl.Int64, "ts": pl.Datetime("us")})
RIGHT_SCAN = Scan("r", RIGHT_SCHEMA, "ts")


def _two_sided(seed: int, n: int = 300) -> list[tuple[int, pl.DataFrame]]:
    """Batches of a left (port 0) and a right (port 1) input, interleaved at
    random, each ~1 ms apart and up to 50 ms out of order, on whole
    milliseconds (equal times are common); keys 'a' and 'b' on both sides, 'c'
    only left, 'd' only right."""
    rnd = random.Random(seed)
    batches: dict[int, list[pl.DataFrame]] = {0: [], 1: []}
    for port, keys, column in ((0, "abc", "v"), (1, "abd", "w")):
        rows = [(rnd.choice(keys), rnd.randrange(6), (i + rnd.randrange(50)) * 1000)
                for i in range(n)]
        i = 0
        while i < n:
            size = rnd.randint(1, 30)
            chunk = pl.DataFrame(rows[i:i + size], schema=["k", column, "ts"], orient="row")
            batches[port].append(chunk.with_columns(pl.col("ts").cast(pl.Datetime("us"))))
            i += size
    # interleaved at random, each input's batches in their order
    ports = [0] * len(batches[0]) + [1] * len(batches[1])
    rnd.shuffle(ports)
    taken = {0: 0, 1: 0}
    merged = []
    for port in ports:
        merged.append((port, batches[port][taken[port]]))
        taken[port] += 1
    return merged


class _Ports:
    """What a graph node does around a two-port operator: per-port watermarks
    (each input's max event time - delay), the minimum, and settle()."""

    def __init__(self, op: Operator, delay_us: int = 100_000) -> None:
        self.op, self.delay = op, delay_us
        self.marks = [None, None]
        self.low = None

    def feed(self, port: int, batch: pl.DataFrame) -> list[pl.DataFrame]:
        out = [self.op.on_batch(port, Delta(batch))]
        top = batch["ts"].dt.epoch("us").max() - self.delay
        if self.marks[port] is None or top > self.marks[port]:
            self.marks[port] = top
            out.append(self.op.on_port_watermark(port, top))
        if None not in self.marks and (self.low is None or min(self.marks) > self.low):
            self.low = min(self.marks)
            out.append(self.op.on_watermark(self.low))
        self.op.settle()
        return [d.rows for d in out if d is not None and d.height]

    def close(self) -> list[pl.DataFrame]:
        out = [self.op.on_port_watermark(p, CLOSED_WATERMARK) for p in (0, 1)]
        out.append(self.op.on_watermark(CLOSED_WATERMARK))
        self.op.settle()
        return [d.rows for d in out if d is not None and d.height]


def _join_round_trip(make, restore_into, tmp_path, cut: int, seed: int) -> None:
    batches = _two_sided(seed)
    whole = _Ports(make())
    expected = [f for port, b in batches for f in whole.feed(port, b)] + whole.close()
    first = _Ports(make())
    got = [f for port, b in batches[:cut] for f in first.feed(port, b)]
    state = first.op.snapshot()
    assert state.frames, "nothing to snapshot at the cut"
    second = _Ports(restore_into())
    second.op.restore(_through_parquet(state, tmp_path))
    second.marks, second.low = list(first.marks), first.low  # the node's, restored with it
    got += [f for port, b in batches[cut:] for f in second.feed(port, b)]
    got += second.close()
    assert _sorted(_rows(got)).equals(_sorted(_rows(expected)))
    assert _rows(expected).height, "the join emitted nothing"
    late = {k: v for k, v in whole.op.counters.items() if k.endswith("_late")}
    assert not any(late.values()), f"the test's rows are on time: {late}"


JOINS = {
    "asof": AsofJoin(SCAN, RIGHT_SCAN, "ts", "ts", ("k",), ("k",), tolerance_us=30_000),
    "asof_inner": AsofJoin(SCAN, RIGHT_SCAN, "ts", "ts", ("k",), ("k",), how="inner"),
    "asof_global": AsofJoin(SCAN, RIGHT_SCAN, "ts", "ts"),
    "interval": IntervalJoin(SCAN, RIGHT_SCAN, "ts", "ts", -20_000, 10_000, ("k",), ("k",)),
    "interval_left": IntervalJoin(SCAN, RIGHT_SCAN, "ts", "ts", -5_000, 5_000, ("k",), ("k",),
                                  lower_strict=True, how="left"),
    "interval_no_keys": IntervalJoin(SCAN, RIGHT_SCAN, "ts", "ts", -1_000, 0),
    "equi": EquiJoin(SCAN, RIGHT_SCAN, ("k", "v"), ("k", "w")),
    "window": EquiJoin(SCAN, RIGHT_SCAN, ("k", "ts"), ("k", "ts")),
    "window_left": EquiJoin(SCAN, RIGHT_SCAN, ("k", "v", "ts"), ("k", "w", "ts"), how="left"),
    "ttl": EquiJoin(SCAN, RIGHT_SCAN, ("k", "v"), ("k", "w"), state_ttl_us=40_000),
}
OPERATORS = {AsofJoin: AsofJoinOperator, IntervalJoin: IntervalJoinOperator,
             EquiJoin: EquiJoinOperator}


@pytest.mark.parametrize("cut", [5, 23])
@pytest.mark.parametrize("name", sorted(JOINS))
def test_join_operators(tmp_path, name, cut):
    node = JOINS[name]
    op = OPERATORS[type(node)]
    _join_round_trip(lambda: op(node), lambda: op(node), tmp_path, cut, seed=10)


@pytest.mark.parametrize(("before", "after"), [(2, 1), (1, 3)])
@pytest.mark.parametrize("name", ["asof", "interval_left", "window_left"])
def test_split_joins_restore_into_another_number_of_copies(tmp_path, name, before, after):
    node = JOINS[name]
    op = OPERATORS[type(node)]
    keys = {"asof": ("k", "k"), "interval_left": ("k", "k"), "window_left": ("v", "w")}[name]
    with ThreadPoolExecutor(3) as pool:
        def split(workers: int):
            return lambda: Sharded(lambda: op(node), (keys[0],), workers, pool,
                                   right_keys=(keys[1],))
        _join_round_trip(split(before), split(after), tmp_path, 17, seed=11)


def test_a_split_join_repartitions_each_side_by_its_own_keys(tmp_path):
    """The right side's rows are split by the right keys, whatever they are
    called, so they meet the left rows of the same key in the same copy."""
    node = EquiJoin(SCAN, RIGHT_SCAN, ("v",), ("w",))
    right = pl.DataFrame({"k": ["r"] * 30, "w": list(range(30)), "ts": [0] * 30},
                         schema=RIGHT_SCHEMA)
    left = pl.DataFrame({"k": ["l"] * 30, "v": list(range(30)), "ts": [1] * 30},
                        schema=SCHEMA)
    with ThreadPoolExecutor(3) as pool:
        one = Sharded(lambda: EquiJoinOperator(node), ("v",), 1, pool, right_keys=("w",))
        one.on_batch(1, Delta(right))
        three = Sharded(lambda: EquiJoinOperator(node), ("v",), 3, pool, right_keys=("w",))
        three.restore(_through_parquet(one.snapshot(), tmp_path))
        assert sum(bool(shard.counters["right_state_rows"]) for shard in three.shards) > 1
        out = three.on_batch(0, Delta(left))
    assert out is not None and sorted(out.rows["v"].to_list()) == list(range(30))
