"""Replaying files through a database: the backtest behind ``laminar-polars run``.

A `Replay` pushes each input file into its source in Arrow batches, in file
order (files are read lazily with Polars, see `laminar_polars.io.files`). With
several inputs, their rows are merged by event time: each row is keyed by the
running maximum of its source's watermark column up to it in its file (how far
that input's event time has come; the source's watermark follows it), and rows
go out in the order of that key, ties to the input named first. The key never
decreases within a file, so each file's rows keep their order, and with it
which rows are late, exactly as if the file had arrived live, while the inputs
advance together as live feeds do.

The merge works a batch at a time: the input whose buffered rows end earliest
in event time sets the frontier, every input hands over its rows up to it, and
the rows for one source from several files are merged with a stable sort on
the key. No row is looked at in Python.

``speed`` paces event time against the wall clock: a row is pushed once the
wall clock, started at the first row, has run ``key / speed`` past it. 0 (the
default) pushes as fast as the engine takes rows.

Examples
--------
>>> import datetime as dt, pathlib, tempfile
>>> import polars as pl, laminar_polars as lp
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> t0 = dt.datetime(2024, 1, 2, 9, 30)
>>> pl.DataFrame({"symbol": ["A", "B", "A"], "qty": [1, 2, 3],
...               "ts": [t0, t0 + dt.timedelta(seconds=1), t0 + dt.timedelta(seconds=65)]}
...              ).write_parquet(folder / "trades.parquet")
>>> db = lp.open()
>>> db.execute('''
...     CREATE SOURCE trades (symbol VARCHAR, qty BIGINT, ts TIMESTAMP NOT NULL,
...                           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
...     CREATE MATERIALIZED VIEW volume AS
...     SELECT tumble(ts, INTERVAL '1' MINUTE) AS minute, sum(qty) AS qty
...     FROM trades GROUP BY tumble(ts, INTERVAL '1' MINUTE)''')
>>> replay(db, {"trades": folder / "trades.parquet"})
3
>>> db.stop()
>>> db.query("SELECT * FROM volume ORDER BY minute")
shape: (2, 2)
┌─────────────────────┬─────┐
│ minute              ┆ qty │
│ ---                 ┆ --- │
│ datetime[μs]        ┆ i64 │
╞═════════════════════╪═════╡
│ 2024-01-02 09:30:00 ┆ 3   │
│ 2024-01-02 09:31:00 ┆ 3   │
└─────────────────────┴─────┘
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Union

import polars as pl

from laminar_polars.db import LaminarDB
from laminar_polars.errors import CatalogError, Full
from laminar_polars.io.files import file_format, scan_file
from laminar_polars.io.source import Source

__all__ = ["Input", "InputError", "Replay", "replay"]

DEFAULT_BATCH_ROWS = 65_536
KEY = "__lp_event_key"  # the merge key column, dropped before a push
# How long a paced replay sleeps at most before calling `tick` again.
TICK_SECONDS = 0.05
# The clock pacing reads and sleeps on (the tests put a fake one here).
_monotonic = time.monotonic
_sleep = time.sleep

PathLike = Union[str, "os.PathLike[str]"]


class InputError(ValueError):
    """An input cannot be replayed: its file, its columns, or its values
    (the command exits 2, naming the input)."""


@dataclasses.dataclass(frozen=True)
class Input:
    """One input file of a replay, for source ``source``."""

    source: str
    path: pathlib.Path

    @classmethod
    def parse(cls, text: str) -> Input:
        """``SOURCE=PATH``, as ``--input`` takes it.

        >>> Input.parse("trades=day 1.parquet")
        Input(source='trades', path=PosixPath('day 1.parquet'))
        """
        source, equals, path = text.partition("=")
        if not equals or not source.strip() or not path:
            raise InputError(f"--input takes SOURCE=PATH, got {text!r}")
        return cls(source.strip(), pathlib.Path(path))

    def __str__(self) -> str:
        return f"{self.source}={self.path}"


class _Reader:
    """One input's batches, each with the merge key, buffered one at a time."""

    def __init__(self, spec: Input, frame: pl.LazyFrame, time_column: str | None,
                 batch_rows: int) -> None:
        self.spec = spec
        self.time_column = time_column
        self._frame = frame
        self._batch_rows = batch_rows
        self._batches: Iterator[pl.DataFrame] | None = None
        self.buffer: pl.DataFrame | None = None
        self._reached: int | None = None  # the key of the last row buffered so far

    def fill(self) -> bool:
        """Buffer the next non-empty batch if none is buffered; False at the end."""
        while self.buffer is None:
            try:
                if self._batches is None:
                    self._batches = iter(self._frame.collect_batches(
                        chunk_size=self._batch_rows, maintain_order=True))
                frame = next(self._batches, None)
            except (OSError, pl.exceptions.PolarsError) as error:
                raise InputError(f"--input {self.spec}: {_first_line(error)}") from error
            if frame is None:
                return False
            if frame.height:
                self.buffer = self._keyed(frame)
        return True

    def _keyed(self, frame: pl.DataFrame) -> pl.DataFrame:
        if self.time_column is None:
            return frame
        column = pl.col(self.time_column)
        if not frame.schema[self.time_column].is_integer():  # a TIMESTAMP or DATE
            column = column.dt.epoch("us")
        # The running maximum, carried over from the batches before; rows
        # before the first event time (nulls) take the first one.
        key = pl.max_horizontal(column.cum_max().forward_fill(), pl.lit(self._reached))
        frame = frame.with_columns(key.backward_fill().fill_null(0).cast(pl.Int64).alias(KEY))
        self._reached = int(frame[KEY][-1])
        return frame

    @property
    def last_key(self) -> int:
        assert self.buffer is not None
        return int(self.buffer[KEY][-1])

    def take_until(self, frontier: int) -> pl.DataFrame:
        """The buffered rows whose key is at most ``frontier``."""
        assert self.buffer is not None
        cut = int(self.buffer[KEY].search_sorted(frontier, side="right"))
        head, rest = self.buffer[:cut], self.buffer[cut:]
        self.buffer = rest if rest.height else None
        return head


class Replay:
    """Input files ready to be pushed into ``db``'s sources; :meth:`run` pushes them.

    Everything that can be checked before a row is pushed is checked here:
    each source exists, each file has a known format, can be read and has
    the source's columns, and, with several inputs or a ``speed``, each
    source has a watermark column to merge and pace by.

    Parameters
    ----------
    db
        The database, with the pipeline's sources defined.
    inputs
        ``{source: path}``, or ``(source, path)`` pairs / `Input`s, in order
        (a source may take several files: their rows are merged).
    speed
        Event time per wall-clock time: 0 (no pacing) or more.
    batch_rows
        Rows per Arrow batch read from a file.

    Raises
    ------
    InputError
        Naming the input and the problem.
    CatalogError
        A source is unknown.
    """

    def __init__(self, db: LaminarDB, inputs: Mapping[str, PathLike] | Iterable[
                     Input | tuple[str, PathLike]], *,
                 speed: float = 0.0, batch_rows: int = DEFAULT_BATCH_ROWS) -> None:
        if not speed >= 0 or speed == float("inf"):
            raise InputError(f"speed must be a number >= 0, got {speed!r}")
        if batch_rows < 1:
            raise InputError(f"batch_rows must be at least 1, got {batch_rows!r}")
        pairs = inputs.items() if isinstance(inputs, Mapping) else inputs
        specs = [p if isinstance(p, Input) else Input(p[0], pathlib.Path(p[1])) for p in pairs]
        if not specs:
            raise InputError("no input to replay")
        self.db = db
        self.speed = speed
        self.inputs = specs
        self.rows = 0  # pushed so far
        self._readers = [self._reader(spec, batch_rows, merged=len(specs) > 1 or speed > 0)
                         for spec in specs]
        self._sources: dict[str, Source] = {}

    def _reader(self, spec: Input, batch_rows: int, merged: bool) -> _Reader:
        sources = self.db.catalog.sources
        if spec.source not in sources:
            raise CatalogError(f"--input {spec}: " + self.db.catalog.unknown_message(
                "source", spec.source, sources))
        definition = sources[spec.source]
        watermark = definition.config.watermark
        if merged and watermark is None:
            reason = "paced" if len(self.inputs) == 1 else "merged with other inputs"
            raise InputError(f"--input {spec}: source {spec.source!r} has no WATERMARK, "
                             f"so its rows cannot be {reason} by event time")
        if not spec.path.is_file():
            raise InputError(f"--input {spec}: no such file")
        schema = self.db.runtime.relation(spec.source).schema
        try:
            frame = scan_file(spec.path, schema)
        except ValueError as error:
            raise InputError(f"--input {spec}: {error}") from error
        # A single unpaced input needs no merge key: its batches go as they are.
        time_column = watermark.column if merged and watermark else None
        return _Reader(spec, frame, time_column, batch_rows)

    @property
    def total_rows(self) -> int | None:
        """Rows in all inputs, when the files say so cheaply (Parquet and IPC
        keep the count in their metadata); None if one is CSV or NDJSON."""
        total = 0
        for spec in self.inputs:
            kind = file_format(spec.path)
            if kind not in ("parquet", "ipc"):
                return None
            scan = pl.scan_parquet if kind == "parquet" else pl.scan_ipc
            try:
                total += int(scan(spec.path).select(pl.len()).collect().item())
            except (OSError, pl.exceptions.PolarsError):
                return None
        return total

    def run(self, tick: Callable[[], None] | None = None, *, close: bool = True) -> int:
        """Push every input's rows (starting the database if it was not yet),
        then close the sources fed, unless ``close`` is false: their input has
        ended, so every open window closes. Returns the rows pushed.

        ``tick`` is called after every push and, when pacing, at least every
        50 ms while waiting: the place to read subscriptions and show progress.

        Raises `InputError` for a file that turns out unreadable midway;
        `SchemaError` from a push names the source, column and value.
        """
        if self.db.runtime.state == "created":
            self.db.start()
        tick = tick or (lambda: None)
        rounds = self._rounds()
        if self.speed > 0:
            self._paced(rounds, tick)
        else:
            for pieces in rounds:
                for source, frame in pieces:
                    self._push(source, frame, tick)
        if close:
            for spec in self.inputs:
                self._source(spec.source).close()
        return self.rows

    def _rounds(self) -> Iterator[list[tuple[str, pl.DataFrame]]]:
        """Rows for each source, in event-time order round by round (file order
        for a single unpaced input)."""
        active = [reader for reader in self._readers if reader.fill()]
        while active:
            frontier = min(reader.last_key for reader in active) if any(
                reader.time_column for reader in active) else 0
            pieces: dict[str, list[pl.DataFrame]] = {}
            for reader in active:
                if reader.time_column is None:  # the only input, unpaced
                    assert reader.buffer is not None
                    head, reader.buffer = reader.buffer, None
                else:
                    head = reader.take_until(frontier)
                if head.height:
                    pieces.setdefault(reader.spec.source, []).append(head)
            yield [(source, self._merge(source, frames)) for source, frames in pieces.items()]
            active = [reader for reader in active if reader.fill()]

    def _merge(self, source: str, frames: list[pl.DataFrame]) -> pl.DataFrame:
        if len(frames) == 1:
            return frames[0]
        try:
            merged = pl.concat(frames, how="vertical_relaxed")
        except pl.exceptions.PolarsError as error:
            raise InputError(f"the inputs of source {source!r} do not have the same column "
                             f"types: {_first_line(error)}") from error
        return merged.sort(KEY, maintain_order=True)  # stable: ties keep input order

    def _paced(self, rounds: Iterator[list[tuple[str, pl.DataFrame]]],
               tick: Callable[[], None]) -> None:
        start: float | None = None
        first_key = 0
        per_second = self.speed * 1_000_000  # event-time microseconds per wall second
        for pieces in rounds:
            if start is None:
                start = _monotonic()
                first_key = min(int(frame[KEY][0]) for _, frame in pieces)
            while pieces:
                due = first_key + (_monotonic() - start) * per_second
                waiting = []
                for source, frame in pieces:
                    cut = int(frame[KEY].search_sorted(due, side="right"))
                    if cut:
                        self._push(source, frame[:cut], tick)
                    if cut < frame.height:
                        waiting.append((source, frame[cut:]))
                pieces = waiting
                if pieces:
                    next_key = min(int(frame[KEY][0]) for _, frame in pieces)
                    wait = start + (next_key - first_key) / per_second - _monotonic()
                    tick()
                    _sleep(min(max(wait, 0.0), TICK_SECONDS))

    def _source(self, name: str) -> Source:
        # One handle per source: a second handle would make its ring multi-producer.
        if name not in self._sources:
            self._sources[name] = self.db.source(name)
        return self._sources[name]

    def _push(self, name: str, frame: pl.DataFrame, tick: Callable[[], None]) -> None:
        if KEY in frame.columns:
            frame = frame.drop(KEY)
        source = self._source(name)
        while True:
            try:
                source.push_arrow(frame)
                break
            except Full:  # a source that rejects when full: wait for room
                tick()
                time.sleep(0.001)
        self.rows += frame.height
        tick()


def replay(db: LaminarDB, inputs: Mapping[str, PathLike] | Iterable[
               Input | tuple[str, PathLike]], *,
           speed: float = 0.0, batch_rows: int = DEFAULT_BATCH_ROWS, close: bool = True,
           tick: Callable[[], None] | None = None) -> int:
    """Push ``inputs`` into ``db``'s sources (see `Replay`) and return the rows pushed.

    The database is started if it was not; the sources fed are closed at the
    end unless ``close`` is false.
    """
    return Replay(db, inputs, speed=speed, batch_rows=batch_rows).run(tick, close=close)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
