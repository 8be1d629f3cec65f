"""Batch oracle for the streaming engine: the same answers, computed by Polars in one go.

A test builds a stream of *events* (rows of the ``trades`` source, plus optional
explicit watermarks), feeds it through the engine with some batch boundaries,
reads everything the sink emitted after ``db.stop()``, and compares it with
Polars run in batch over the rows that were not late.

Late rule (docs/semantics.md, checked against ``metrics()`` in test_oracle_late.py): a
row is late iff its ts < the source's watermark when it arrives, where the watermark is
``max(ts seen so far) - delay`` raised by explicit ``source.watermark(ts)`` calls
and never moving backwards.

SQL windows are computed here from first principles (epoch-aligned tumble / hop,
sessions by gap); LazyFrame views are checked against Polars itself by running
the very same ``build(lf)`` function on the real rows.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
import time
import zlib
from collections.abc import Callable, Iterable, Sequence

import polars as pl
import pyarrow as pa
from polars.testing import assert_frame_equal

import laminar_polars as lp

EPOCH = dt.datetime(1970, 1, 1)
T0 = dt.datetime(2024, 1, 1, 9, 30)  # on every second / minute grid
US = 1
MS = 1_000
SECOND = 1_000_000

ARRIVAL = "__arrival"  # arrival index of a row in the oracle's frames

TRADES_SCHEMA = pl.Schema({"symbol": pl.String, "price": pl.Float64, "qty": pl.Int64,
                           "ts": pl.Datetime("us")})
TRADES_ARROW = pa.schema({"symbol": pa.string(), "price": pa.float64(), "qty": pa.int64(),
                          "ts": pa.timestamp("us")})


def trades_ddl(delay_ms: int = 100, name: str = "trades", *, delay_us: int | None = None) -> str:
    """The trades source; its watermark delay in ms, or exactly ``delay_us``."""
    delay = interval(delay_ms * MS if delay_us is None else delay_us)
    return f"""
CREATE SOURCE {name} (
    symbol VARCHAR NOT NULL,
    price  DOUBLE,
    qty    BIGINT,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - {delay}
)"""


def at(micros: int) -> dt.datetime:
    """The datetime ``micros`` microseconds after T0."""
    return T0 + dt.timedelta(microseconds=micros)


def from_micros(micros: int) -> dt.datetime:
    """The datetime ``micros`` microseconds after the Unix epoch."""
    return EPOCH + dt.timedelta(microseconds=micros)


def to_micros(ts: dt.datetime) -> int:
    return (ts - EPOCH) // dt.timedelta(microseconds=1)


# -- events ----------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Mark:
    """An explicit ``source.watermark(ts)`` call in the event stream."""

    ts: dt.datetime


Row = tuple  # (symbol, price, qty, ts) in the trades schema order
Event = Row | Mark


def split_late(events: Iterable[Event], delay_us: int) -> tuple[list[Row], list[Row]]:
    """(kept rows, late rows), both in arrival order."""
    watermark: int | None = None
    kept: list[Row] = []
    late: list[Row] = []
    for event in events:
        if isinstance(event, Mark):
            mark = to_micros(event.ts)
            watermark = mark if watermark is None else max(watermark, mark)
            continue
        ts = to_micros(event[3])
        if watermark is not None and ts < watermark:
            late.append(event)
            continue
        kept.append(event)
        watermark = ts - delay_us if watermark is None else max(watermark, ts - delay_us)
    return kept, late


def frame(rows: Sequence[Row], schema: pl.Schema = TRADES_SCHEMA) -> pl.DataFrame:
    """Rows as a frame in arrival order, with an ``__arrival`` index column."""
    df = pl.DataFrame([list(r) for r in rows], schema=schema, orient="row")
    return df.with_row_index(ARRIVAL)


def real_rows(rows: Sequence[Row], schema: pl.Schema = TRADES_SCHEMA) -> pl.DataFrame:
    """Rows as a plain frame in arrival order (what a LazyFrame view's oracle runs on)."""
    return pl.DataFrame([list(r) for r in rows], schema=schema, orient="row")


# -- generating rows ---------------------------------------------------------------

def stable_seed(*parts: object) -> int:
    """A seed from test parameters that is the same in every process (unlike hash())."""
    return zlib.crc32(repr(parts).encode()) % 100_000


def gen_trades(n: int, seed: int, *, symbols: Sequence[str] = ("AAPL", "MSFT", "GOOG"),
               null_frac: float = 0.1, steps_ms: Sequence[int] = (0, 0, 1, 7, 40, 100, 250),
               jump_frac: float = 0.02, start_us: int = 0) -> list[Row]:
    """``n`` trades in event-time order (ties included), some nulls in price and qty,
    and now and then a jump of 1 to 3 s (so sessions end and windows stay empty)."""
    rng = random.Random(seed)
    t = start_us
    rows = []
    for _ in range(n):
        if rng.random() < jump_frac:
            t += rng.randrange(1000, 3000) * MS
        else:
            t += rng.choice(steps_ms) * MS + rng.choice((0, 0, 0, 1, 999))
        price = None if rng.random() < null_frac else round(rng.uniform(90, 110), 2)
        qty = None if rng.random() < null_frac else rng.randrange(1, 500)
        rows.append((rng.choice(symbols), price, qty, at(t)))
    return rows


def shuffle_within(rows: Sequence[Row], delay_us: int, seed: int, ts_index: int = 3,
                   ) -> list[Row]:
    """Reorder so that no row becomes late: sort by ts + U[0, delay].

    If row b arrives after row a then ts_b + u_b >= ts_a + u_a, so
    ts_b >= ts_a - delay: b is never below the watermark a left.
    """
    rng = random.Random(seed)
    keyed = [(to_micros(r[ts_index]) + rng.randint(0, delay_us), i, r)
             for i, r in enumerate(rows)]
    return [r for _, _, r in sorted(keyed)]


def mix_in_late(rows: Sequence[Row], delay_us: int, seed: int, count: int) -> list[Row]:
    """Insert ``count`` rows at random places whose ts lies below the running
    watermark (late), plus a few exactly at it (not late)."""
    rng = random.Random(seed)
    out = list(rows)
    for _ in range(count):
        pos = rng.randrange(1, len(out) + 1)
        high = max(to_micros(r[3]) for r in out[:pos]) - delay_us
        ts = high - rng.choice((1, 1, 2, 500, 999, 5000, 300_000, 1_500_000))
        if rng.random() < 0.2:
            ts = high  # exactly at the watermark: kept
        symbol = rng.choice([r[0] for r in out[:pos]])
        price, qty = round(rng.uniform(90, 110), 2), rng.randrange(1, 500)
        out.insert(pos, (symbol, price, qty, from_micros(ts)))
    return out


# -- feeding the engine --------------------------------------------------------------

MODES = ("row", "batch", "arrow", "mixed")


def arrow_table(rows: Sequence[Row], schema: pa.Schema = TRADES_ARROW) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in schema]
    return pa.table({f.name: pa.array(list(c), f.type) for f, c in zip(schema, columns,
                                                                         strict=True)},
                    schema=schema)


def feed(source: lp.Source, events: Sequence[Event], mode: str, seed: int = 0, *,
         max_chunk: int = 200, arrow_schema: pa.Schema = TRADES_ARROW) -> None:
    """Push ``events`` in order: rows one by one ('row'), in ``push_batch`` chunks
    ('batch'), in ``push_arrow`` chunks ('arrow'), or a random mix of the three
    ('mixed'); explicit watermarks between rows. Chunk sizes are random."""
    rng = random.Random(seed)
    i = 0
    while i < len(events):
        event = events[i]
        if isinstance(event, Mark):
            source.watermark(event.ts)
            i += 1
            continue
        how = rng.choice(MODES[:3]) if mode == "mixed" else mode
        size = 1 if how == "row" else rng.randint(1, max_chunk)
        chunk = []
        while i < len(events) and len(chunk) < size and not isinstance(events[i], Mark):
            chunk.append(events[i])
            i += 1
        if how == "row":
            for r in chunk:
                source.push(r)
        elif how == "batch":
            source.push_batch(chunk)
        else:
            source.push_arrow(arrow_table(chunk, arrow_schema))


def settle(db: lp.LaminarDB, view: str, rows_in: int, timeout: float = 30.0) -> None:
    """Wait until ``view`` has taken in ``rows_in`` rows (no timing asserted:
    the timeout only stops a hang)."""
    deadline = time.monotonic() + timeout
    while db.metrics()["views"][view]["rows_in"] < rows_in:
        assert time.monotonic() < deadline, f"view {view!r} never took in {rows_in} rows"
        time.sleep(0.001)


def read_all(subscription: lp.Subscription, timeout: float = 30.0) -> pl.DataFrame:
    """Every frame until the subscription ends (the database stopped)."""
    frames = []
    while True:
        try:
            frames.append(subscription.recv(timeout=timeout))
        except lp.Closed:
            break
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame()


# -- comparing ------------------------------------------------------------------------

def assert_same(got: pl.DataFrame, expected: pl.DataFrame, *,
                check_dtypes: bool = True, rtol: float = 1e-9, atol: float = 1e-9) -> None:
    """Equal as multisets of rows: same columns in the same order, rows sorted by
    every column, floats within a tolerance (aggregation order differs)."""
    if got.width == 0 and got.height == 0:  # nothing was emitted at all
        got = expected.clear()
    assert got.columns == expected.columns, f"columns {got.columns} != {expected.columns}"
    if got.height == 0 and expected.height == 0:
        return
    keys = [c for c, t in expected.schema.items() if not t.is_float()]
    floats = [c for c, t in expected.schema.items() if t.is_float()]
    order = keys + floats
    assert_frame_equal(got.sort(order, nulls_last=True), expected.sort(order, nulls_last=True),
                       check_dtypes=check_dtypes, check_exact=False, rel_tol=rtol, abs_tol=atol)


def last_per_key(emitted: pl.DataFrame, keys: Sequence[str]) -> pl.DataFrame:
    """The last emitted row of every key (upsert / EMIT ON UPDATE streams)."""
    return emitted.unique(subset=list(keys), keep="last", maintain_order=True)


# -- SQL oracle -----------------------------------------------------------------------------

def _us(column: str) -> pl.Expr:
    return pl.col(column).dt.epoch("us")


def _datetime(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Datetime("us"))


def tumble(df: pl.DataFrame, size_us: int, time: str = "ts", offset_us: int = 0,
           ) -> pl.DataFrame:
    """Adds window_start / window_end: ``[start, start + size)`` with start on the
    epoch-aligned grid ``offset + k * size`` (floor, also before 1970)."""
    start = (_us(time) - offset_us).floordiv(size_us) * size_us + offset_us
    return df.with_columns(window_start=_datetime(start), window_end=_datetime(start + size_us))


def hop(df: pl.DataFrame, slide_us: int, size_us: int, time: str = "ts", offset_us: int = 0,
        ) -> pl.DataFrame:
    """One row per hopping window containing the row: starts ``offset + k * slide``
    with ``start <= ts < start + size``."""
    t = _us(time) - offset_us
    last = t.floordiv(slide_us)
    first = (t - size_us).floordiv(slide_us) + 1
    exploded = (df.with_columns(__k=pl.int_ranges(first, last + 1))
                .explode("__k")
                .drop_nulls("__k")  # a row in no window (slide > size) is in no group
                .with_columns(__s=pl.col("__k") * slide_us + offset_us))
    return (exploded.with_columns(window_start=_datetime(pl.col("__s")),
                                  window_end=_datetime(pl.col("__s") + size_us))
            .drop("__k", "__s"))


def sessions(df: pl.DataFrame, keys: Sequence[str], gap_us: int,
             time: str = "ts") -> pl.DataFrame:
    """Adds ``__session`` (an id per key): per key in event-time order, a new
    session starts when ts - previous ts >= gap. Callers aggregate
    session_start = min(ts), session_end = max(ts) + gap."""
    keys = list(keys)
    ordered = df.sort([*keys, time, ARRIVAL])
    t = _us(time)
    new = (t - t.shift(1).over(keys)).fill_null(gap_us) >= gap_us
    return ordered.with_columns(__session=new.cum_sum().over(keys))


def sql_agg(func: str, column: str | None = None) -> pl.Expr:
    """A SQL aggregate over a group already sorted by (event time, arrival)."""
    if func == "count_star":
        return pl.len()
    c = pl.col(column)
    return {
        "count": c.count(),
        "sum": pl.when(c.count() > 0).then(c.sum()),  # SQL: sum of no values is NULL
        "min": c.min(),
        "max": c.max(),
        "avg": c.mean(),
        "first_value": c.first(),
        "last_value": c.last(),
        "count_distinct": c.drop_nulls().n_unique(),
    }[func]


def window_agg(df: pl.DataFrame, keys: Sequence[str], aggs: dict[str, pl.Expr],
               time: str = "ts", window_cols: Sequence[str] = ("window_start", "window_end"),
               ) -> pl.DataFrame:
    """Group the windowed rows by keys and window, in event-time-then-arrival order."""
    by = [*keys, *window_cols]
    ordered = df.sort([time, ARRIVAL], maintain_order=True)
    return ordered.group_by(by, maintain_order=True).agg(**aggs)


def run_lazy(build: Callable[[pl.LazyFrame], pl.LazyFrame], rows: pl.DataFrame, *,
             sort_by: str | None = "ts") -> pl.DataFrame:
    """The LazyFrame oracle: ``build`` on the real rows (stably sorted by event
    time first when the view uses ``group_by_dynamic``)."""
    lf = rows.lazy()
    if sort_by is not None:
        lf = lf.sort(sort_by, maintain_order=True)
    return build(lf).collect()


def interval(micros: int) -> str:
    """A SQL interval literal for ``micros`` (in the largest exact unit)."""
    for unit, size in (("SECOND", SECOND), ("MILLISECOND", MS)):
        if micros % size == 0 and micros:
            return f"INTERVAL '{micros // size}' {unit}"
    return f"INTERVAL '{micros}' MICROSECOND"


def scenario(kind: str, rows: Sequence[Row], delay_us: int, seed: int) -> list[Row]:
    """'ordered', 'shuffled' (within the delay, nothing late) or 'late' (shuffled,
    plus late rows mixed in)."""
    if kind == "ordered":
        return list(rows)
    shuffled = shuffle_within(rows, delay_us, seed)
    if kind == "shuffled":
        return shuffled
    assert kind == "late"
    return mix_in_late(shuffled, delay_us, seed + 1, count=max(3, len(rows) // 20))


SCENARIOS = ("ordered", "shuffled", "late")


def drive(db: lp.LaminarDB, events: Sequence[Event], mode: str, seed: int,
          sinks: Sequence[str], *, start: bool | None = None, rounds: int = 1,
          settle_view: str | None = None, delay_us: int | None = None,
          source: str = "trades") -> dict[str, pl.DataFrame]:
    """Subscribe to ``sinks``, feed ``events``, stop, and return what each emitted.

    The engine runs during the pushes (``start``), or only drains at stop; by
    default chosen from the seed. With ``rounds > 1`` the engine is started and
    the events are pushed in that many rounds, waiting after each until view
    ``settle_view`` (reading the source directly) has taken in every row not
    late so far (``delay_us`` is the source's delay): each round is then at
    least one micro-batch of its own, so views see several batches.
    """
    subs = {name: db.sink(name).subscribe() for name in sinks}
    schemas = {name: db.sink(name).schema for name in sinks}
    if start is None:
        start = seed % 2 == 0
    if start or rounds > 1:
        db.start()
    size = -(-len(events) // rounds) if events else 1
    for first in range(0, len(events), size):
        part = events[first:first + size]
        feed(db.source(source), part, mode, seed + first)
        if rounds > 1:
            assert settle_view is not None and delay_us is not None
            kept = len(split_late(events[:first + size], delay_us)[0])
            settle(db, settle_view, kept)
    db.stop()
    out = {name: read_all(sub) for name, sub in subs.items()}
    # a sink that emitted nothing: an empty frame of its schema
    return {name: frame if frame.width else pl.DataFrame(schema=schemas[name])
            for name, frame in out.items()}
