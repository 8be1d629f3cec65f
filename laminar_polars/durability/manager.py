"""`Durability`: a database's write-ahead log, checkpoints and recovery.

The runtime makes one when the database has a ``data_dir``:

- at ``start()``, `recover` restores the newest valid checkpoint into the views
  whose plans still match it, replays the log after it through the graph, and
  starts the log's writer thread;
- the engine hands every micro-batch of a logged source to `journal` before
  the graph sees it; a producer of a ``sync`` source waits in `wait_durable`
  until the log has its rows on disk;
- `checkpoint` writes the views' states, taken at a barrier, once the log is
  durable through the positions they cover (a checkpoint never holds rows the
  log has not made durable), then drops checkpoints and log segments no
  longer needed;
- `close` flushes the log and stops its thread.

Positions count a source's accepted rows (taken or dropped) across restarts:
``base`` (where this run began) plus the ring's own count.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import threading
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from laminar_polars.catalog import SourceDef
from laminar_polars.config import Config, WalMode
from laminar_polars.durability.checkpoint import (
    Checkpoint,
    CorruptCheckpoint,
    SourceMark,
    ViewState,
    complete_ids,
    load_checkpoint,
    prune_checkpoints,
    write_checkpoint,
)
from laminar_polars.durability.layout import checkpoint_ids, checkpoints_dir, segments, wal_dir
from laminar_polars.durability.wal import Record, WalWriter, read_records
from laminar_polars.engine.graph import View
from laminar_polars.engine.operator import State
from laminar_polars.engine.sentinels import CLOSED_WATERMARK, NO_WATERMARK
from laminar_polars.errors import RecoveryError, RecoveryWarning
from laminar_polars.plan.fingerprint import fingerprint

__all__ = ["Durability", "Snapshot", "source_fingerprint"]

# A waiting producer checks for Ctrl-C and a stopped engine this often.
WAIT_SLICE = 0.05


def source_fingerprint(definition: SourceDef) -> str:
    """What a source's logged rows depend on: its columns and watermark."""
    watermark = definition.watermark
    return fingerprint((definition.columns,
                        None if watermark is None else (watermark.column, watermark.delay_us)))


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a checkpoint is made of, taken at one barrier: each view's node
    states, and each source's position (this run's count) and watermark."""

    views: dict[str, list[State]]
    sources: dict[str, tuple[int, int]]


class Durability:
    """The durable state of one database under ``config.data_dir``."""

    def __init__(self, config: Config) -> None:
        assert config.data_dir is not None
        self.config = config
        self.data_dir = Path(config.data_dir)
        self.checkpoints = checkpoints_dir(self.data_dir)
        self.wal = wal_dir(self.data_dir)
        self.writer: WalWriter | None = None
        self._counted: WalWriter | None = None  # this run's writer, kept for metrics after close
        self.base: dict[str, int] = {}  # each source's position when this run began
        self.finite: dict[str, int] = {}  # each source's last watermark short of +inf
        self.closed: set[str] = set()  # sources closed for good (Source.close) before
        # The input ends because the database stops or is collected, not by a
        # Source.close(): that end (+inf watermarks) is not durable state.
        self.ending = False
        self.logged: set[str] = set()  # sources whose rows go to the log
        self.last: Checkpoint | None = None
        self.replayed_rows = 0
        self.checkpoint_bytes = 0
        self._lock = threading.Lock()  # one checkpoint at a time
        self._stop = threading.Event()
        self._interval_thread: threading.Thread | None = None

    # -- settings ----------------------------------------------------------------------
    def wal_mode(self, source: SourceDef) -> WalMode | None:
        """A source's log mode: its own ``WITH (wal_mode = ...)``, else the database's."""
        mode = source.config.wal_mode or self.config.wal_mode
        return None if mode is None else WalMode.parse(mode)

    def interval(self, sources: Mapping[str, SourceDef]) -> float | None:
        """Seconds between checkpoints: the shortest of the database's and the
        sources' own ``checkpoint_interval`` (a checkpoint covers every view)."""
        settings = [self.config.checkpoint_interval,
                    *(s.config.checkpoint_interval for s in sources.values())]
        seconds = [s.total_seconds() for s in settings if isinstance(s, dt.timedelta)]
        return min(seconds) if seconds else None

    # -- recovery ------------------------------------------------------------------------
    def recover(self, sources: Mapping[str, SourceDef], views: Mapping[str, View],
                feed: Callable[[str, pl.DataFrame | None, int], None]) -> None:
        """Restore the newest usable checkpoint, replay the log after it through
        ``feed(source, rows, watermark)``, and start logging."""
        checkpoint = self._newest_checkpoint()
        positions = {name: 0 for name in sources}
        changed: set[str] = set()
        if checkpoint is not None:
            self.last = checkpoint
            positions.update(self._restore(checkpoint, sources, views, changed))
        records, segment_ends, cut = read_records(self.wal)
        if cut is not None:
            warnings.warn(f"the write-ahead log was cut at {cut.segment.name}, byte "
                          f"{cut.offset}: {cut.why}; the records after it are lost",
                          RecoveryWarning, stacklevel=4)
        # (a record without rows at the checkpoint's position may be a
        # Source.close() after it: replaying one from before it is a no-op)
        replay = [r for r in records if r.source in sources and r.source not in changed
                  and r.end >= positions[r.source]]
        self._check_reach(replay, positions, checkpoint)
        for record in replay:
            if record.first < positions[record.source]:
                continue  # wholly before the checkpoint's position (never straddles one)
            feed(record.source, record.frame, record.watermark)
            positions[record.source] = record.end
            if record.watermark == CLOSED_WATERMARK:
                self.closed.add(record.source)
            else:
                self.finite[record.source] = record.watermark
            self.replayed_rows += 0 if record.frame is None else record.frame.height
        self.base = positions
        self.logged = {name for name, source in sources.items() if self.wal_mode(source)}
        if self.logged:
            sync = {n for n in self.logged if self.wal_mode(sources[n]) is WalMode.SYNC}
            numbers = [number for number, _ in segments(self.wal)]
            self.writer = WalWriter(self.wal, (numbers[-1] + 1) if numbers else 1, sync,
                                    dict(positions))
            self.writer.segment_ends.update(segment_ends)
            self._counted = self.writer

    def _newest_checkpoint(self) -> Checkpoint | None:
        ids = complete_ids(self.checkpoints)
        for checkpoint_id in reversed(ids):
            try:
                return load_checkpoint(self.checkpoints, checkpoint_id)
            except CorruptCheckpoint as error:
                warnings.warn(f"{error}; falling back to an older checkpoint", RecoveryWarning,
                              stacklevel=5)
        if ids:
            raise RecoveryError(f"no checkpoint in {self.checkpoints} can be used "
                                f"({len(ids)} found, every one corrupt)")
        return None

    def _restore(self, checkpoint: Checkpoint, sources: Mapping[str, SourceDef],
                 views: Mapping[str, View], changed: set[str]) -> dict[str, int]:
        for name, view in views.items():
            saved = checkpoint.views.get(name)
            if saved is None:
                warnings.warn(f"view {name!r} is not in checkpoint {checkpoint.id}: it starts "
                              "empty", RecoveryWarning, stacklevel=5)
            elif saved.fingerprint != fingerprint(view.plan) or len(saved.nodes) != len(
                    view.nodes):
                warnings.warn(f"view {name!r} changed since checkpoint {checkpoint.id}: it "
                              "starts empty", RecoveryWarning, stacklevel=5)
            else:
                view.restore(saved.nodes)
        positions = {}
        for name, definition in sources.items():
            mark = checkpoint.sources.get(name)
            if mark is None:
                continue
            if mark.fingerprint != source_fingerprint(definition):
                warnings.warn(f"source {name!r} changed since checkpoint {checkpoint.id}: its "
                              "logged rows are not replayed", RecoveryWarning, stacklevel=5)
                changed.add(name)
                continue
            positions[name] = mark.position
            if mark.watermark == CLOSED_WATERMARK:
                self.closed.add(name)
            elif mark.watermark != NO_WATERMARK:
                self.finite[name] = mark.watermark
        return positions

    def _check_reach(self, replay: list[Record], positions: dict[str, int],
                     checkpoint: Checkpoint | None) -> None:
        """The log must reach back to where the checkpoint leaves off."""
        first: dict[str, int] = {}
        for record in replay:
            first.setdefault(record.source, record.first)
        for source, start in first.items():
            if start > positions[source]:
                since = f"checkpoint {checkpoint.id}" if checkpoint else "the beginning"
                raise RecoveryError(
                    f"the write-ahead log of source {source!r} starts at row {start}, after "
                    f"{since} (row {positions[source]}): rows in between are missing")

    def watermark(self, source: str) -> int | None:
        """The watermark a recovered source resumes from (None: from nothing)."""
        return self.finite.get(source)

    # -- the log ---------------------------------------------------------------------------
    def journal(self, source: str, first: int, end: int, frame: pl.DataFrame | None,
                watermark: int) -> None:
        """Log a micro-batch the engine took (this run's positions); engine
        thread. A +inf watermark is a Source.close(), logged as such, unless
        the database is stopping (``ending``)."""
        if source not in self.logged or self.writer is None:
            return
        if watermark != CLOSED_WATERMARK:
            self.finite[source] = watermark
        elif self.ending:
            watermark = self.finite.get(source, NO_WATERMARK)
        base = self.base.get(source, 0)
        self.writer.append(Record(source, base + first, base + end, watermark, frame))

    def wait_durable(self, source: str, pushed: int, ended: Callable[[], BaseException | None],
                     ) -> None:
        """Return once ``source``'s first ``pushed`` rows of this run are on disk.

        Waits in slices: Ctrl-C interrupts it (the rows may or may not be
        durable then); ``ended()`` gives the reason, if the engine stopped
        before logging them, to raise."""
        writer = self.writer
        if writer is None or source not in self.logged:
            return
        target = self.base.get(source, 0) + pushed
        while not writer.wait(source, target, WAIT_SLICE):
            reason = ended()
            if reason is not None and not writer.wait(source, target, WAIT_SLICE):
                raise reason

    # -- checkpoints -------------------------------------------------------------------------
    def checkpoint(self, snapshot: Snapshot, sources: Mapping[str, SourceDef],
                   views: Mapping[str, View]) -> int | None:
        """Write a checkpoint of ``snapshot``; its id (None: nothing changed
        since the last one, or the input is ending). A source's +inf
        watermark in it is a Source.close(): restored as closed."""
        with self._lock:
            if self.ending:
                return None
            marks = {
                name: SourceMark(self.base.get(name, 0) + position, watermark,
                                 source_fingerprint(sources[name]))
                for name, (position, watermark) in snapshot.sources.items() if name in sources
            }
            if self.last is not None and marks == self.last.sources and \
                    set(snapshot.views) == set(self.last.views):
                return None
            if self.writer is not None:  # the log first: never ahead of it
                for name, mark in marks.items():
                    if name in self.logged:
                        self._await_log(name, mark.position)
            ids = checkpoint_ids(self.checkpoints)
            new_id = (ids[-1] + 1) if ids else 1
            saved = {name: ViewState(fingerprint(views[name].plan), states)
                     for name, states in snapshot.views.items() if name in views}
            self.last = write_checkpoint(self.checkpoints, new_id, marks, saved)
            self.checkpoint_bytes = self.last.bytes
            kept = prune_checkpoints(self.checkpoints, self.config.keep_checkpoints)
            if self.writer is not None and kept:
                oldest = load_manifest_positions(self.checkpoints, kept[0])
                self.writer.prune(oldest)
            return new_id

    def _await_log(self, source: str, position: int) -> None:
        assert self.writer is not None
        while not self.writer.wait(source, position, WAIT_SLICE):
            pass

    def start_interval(self, seconds: float, take: Callable[[], int | None]) -> None:
        """Checkpoint every ``seconds`` on a thread of its own."""
        def run() -> None:
            while not self._stop.wait(seconds):
                try:
                    take()
                except Exception as error:  # reported; the next one tries again
                    warnings.warn(f"a checkpoint failed: {error}", RuntimeWarning, stacklevel=1)
        self._interval_thread = threading.Thread(target=run, name="laminar-checkpoints",
                                                 daemon=True)
        self._interval_thread.start()

    # -- lifecycle and metrics -----------------------------------------------------------------
    def flush(self) -> None:
        if self.writer is not None:
            self.writer.flush()

    def stop_interval(self) -> None:
        """Stop taking checkpoints every interval (waits for one under way)."""
        self._stop.set()
        if self._interval_thread is not None and \
                self._interval_thread is not threading.current_thread():
            self._interval_thread.join()
        self._interval_thread = None

    def close(self) -> None:
        """Stop checkpointing, flush the log, stop its thread. Idempotent."""
        self.stop_interval()
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def checkpointed_rows(self, source: str) -> int:
        return 0 if self.last is None else self.last.sources.get(
            source, SourceMark(0, 0, "")).position

    def metrics(self) -> dict[str, Any]:
        last = self.last
        writer = self._counted
        return {
            "last_checkpoint": None if last is None else last.id,
            "last_checkpoint_time": None if last is None else last.created,
            "checkpoint_bytes": self.checkpoint_bytes,
            "wal_bytes": sum(p.stat().st_size for _, p in segments(self.wal)),
            "wal_bytes_written": 0 if writer is None else writer.bytes_written,
            "fsyncs": 0 if writer is None else writer.fsyncs,
            "replayed_rows": self.replayed_rows,
        }


def load_manifest_positions(directory: Path, checkpoint_id: int) -> dict[str, int]:
    """A checkpoint's positions per source, from its manifest alone."""
    manifest = json.loads((directory / str(checkpoint_id) / "manifest.json").read_bytes())
    return {name: mark["position"] for name, mark in manifest["sources"].items()}
