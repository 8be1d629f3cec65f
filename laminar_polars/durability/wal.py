"""The write-ahead log: every micro-batch the engine takes from a source, in
checksummed records, written and fsynced by a thread of its own.

A record is one source's micro-batch as the engine took it (late rows already
dropped) with the watermark it went through the graph with, so replaying the
records through the same views rebuilds their state exactly::

    b"LPW1" | header length (u32) | payload length (u64) | CRC-32C (u32) | header | payload

The header is JSON: ``source``, ``first`` and ``end`` (the source's positions:
rows accepted, taken or dropped, counted across restarts), ``rows`` and
``watermark``; the payload is the rows as an Arrow IPC stream (none for a
record that only moves the watermark). The checksum covers header and payload.

Group commit: the engine hands records to the `WalWriter` thread, which
writes whatever has queued up and then fsyncs once for all of it; a producer
of a ``sync`` source waits until its rows are covered (`WalWriter.wait`).
Sources in ``async`` mode do not wait: the thread fsyncs at least every
``flush_interval`` (10 ms) while there is something unsynced.

Reading (`read_records`) stops at the first record that is torn or fails its
checksum: the log is cut there (the file truncated, later segments removed).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pyarrow as pa

from laminar_polars import _native
from laminar_polars.durability.layout import fsync_dir, segment_path, segments

__all__ = ["Cut", "Record", "WalWriter", "read_records"]

MAGIC = b"LPW1"
PREFIX = struct.Struct("<4sIQI")  # magic, header length, payload length, crc32c
SEGMENT_BYTES = 64 << 20  # a new segment once the current one is this big
FLUSH_INTERVAL = 0.010  # async: fsync at least this often while anything is unsynced
QUEUE_ROWS = 1 << 22  # the engine waits once this many rows wait to be written


@dataclasses.dataclass(frozen=True)
class Record:
    """One source's micro-batch: positions [``first``, ``end``) (rows taken or
    dropped), ``frame`` the rows taken (None: only the watermark moved)."""

    source: str
    first: int
    end: int
    watermark: int
    frame: pl.DataFrame | None

    def encode(self) -> tuple[bytes, pa.Buffer | bytes]:
        """(prefix and header, payload): written one after the other.

        This runs beside the engine, so the GIL it holds is what the log costs
        the pipeline (benches/durability.py): the frame goes to pyarrow at
        Polars' newest compatibility level (strings stay views: no copy), the
        IPC stream is written with the GIL released, the payload is not
        copied into bytes, and the checksum runs without the GIL."""
        payload: pa.Buffer | bytes = b""
        if self.frame is not None and self.frame.height:
            table = self.frame.to_arrow(compat_level=pl.CompatLevel.newest())
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            payload = sink.getvalue()
        header = json.dumps({"source": self.source, "first": self.first, "end": self.end,
                             "rows": 0 if self.frame is None else self.frame.height,
                             "watermark": self.watermark}).encode()
        crc = _native.crc32c(payload, _native.crc32c(header))
        return PREFIX.pack(MAGIC, len(header), len(payload), crc) + header, payload


@dataclasses.dataclass(frozen=True)
class Cut:
    """Where reading stopped short of the end: a torn or corrupt record."""

    segment: Path
    offset: int
    why: str


def _decode(header: bytes, payload: bytes) -> Record:
    fields = json.loads(header)
    frame = None
    if payload:
        with pa.ipc.open_stream(pa.py_buffer(payload)) as reader:
            frame = pl.DataFrame(reader.read_all())
    return Record(fields["source"], fields["first"], fields["end"], fields["watermark"], frame)


def _read_segment(path: Path) -> tuple[list[tuple[Record, int]], int, str | None]:
    """(records with the offset after each, offset of the end of the good
    part, why reading stopped early or None)."""
    data = path.read_bytes()
    records: list[tuple[Record, int]] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < PREFIX.size:
            return records, offset, "a torn record header"
        magic, header_len, payload_len, crc = PREFIX.unpack_from(data, offset)
        start = offset + PREFIX.size
        stop = start + header_len + payload_len
        if magic != MAGIC:
            return records, offset, "a damaged record (bad magic)"
        if stop > len(data):
            return records, offset, "a torn record (the file ends inside it)"
        header, payload = data[start:start + header_len], data[start + header_len:stop]
        if _native.crc32c(payload, _native.crc32c(header)) != crc:
            return records, offset, "a record failing its checksum"
        try:
            record = _decode(header, payload)
        except (ValueError, KeyError, pa.ArrowInvalid) as error:
            return records, offset, f"a record that cannot be read ({error})"
        offset = stop
        records.append((record, offset))
    return records, offset, None


def read_records(directory: Path) -> tuple[list[Record], dict[int, dict[str, int]], Cut | None]:
    """Every good record, oldest first; per segment number, each source's
    greatest ``end`` in it; and where the log was cut (it is then truncated
    there: the rest of that segment and every later segment go)."""
    records: list[Record] = []
    ends: dict[int, dict[str, int]] = {}
    found = segments(directory)
    for index, (number, path) in enumerate(found):
        good, offset, why = _read_segment(path)
        ends[number] = {}
        for record, _ in good:
            records.append(record)
            ends[number][record.source] = max(ends[number].get(record.source, 0), record.end)
        if why is not None:
            with open(path, "r+b") as file:
                file.truncate(offset)
                os.fsync(file.fileno())
            for _, later in found[index + 1:]:
                later.unlink()
            fsync_dir(directory)
            return records, ends, Cut(path, offset, why)
    return records, ends, None


class WalWriter:
    """Writes records to the log on a thread of its own, and fsyncs them.

    ``durable(source)`` is the position up to which a source's records are on
    disk. ``sync_sources`` are the sources whose producers wait for it: while
    one of them has a record waiting, the thread fsyncs as soon as it has
    written what queued up (group commit); otherwise at least every
    ``flush_interval``.
    """

    def __init__(self, directory: Path, next_segment: int, sync_sources: set[str],
                 positions: dict[str, int], flush_interval: float = FLUSH_INTERVAL,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.sync_sources = set(sync_sources)
        self.flush_interval = flush_interval
        self.on_error = on_error
        self.segment_ends: dict[int, dict[str, int]] = {}
        self._number = next_segment
        self._fd = self._open(next_segment)
        self._size = 0
        self._queue: collections.deque[Record] = collections.deque()
        self._queued_rows = 0
        self._written: dict[str, int] = dict(positions)  # written, maybe not yet fsynced
        self._durable: dict[str, int] = dict(positions)
        self._cond = threading.Condition()
        self._flush_asked = False
        self._closing = False
        self.error: BaseException | None = None
        self.bytes_written = 0
        self.fsyncs = 0
        self._thread = threading.Thread(target=self._run, name="laminar-wal", daemon=True)
        self._thread.start()

    def _open(self, number: int) -> int:
        fd = os.open(segment_path(self.directory, number),
                     os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        fsync_dir(self.directory)
        self.segment_ends[number] = {}
        return fd

    # -- the engine's side -----------------------------------------------------------
    def append(self, record: Record) -> None:
        """Queue ``record`` (engine thread); waits while the queue is full."""
        rows = 0 if record.frame is None else record.frame.height
        with self._cond:
            while self._queued_rows > QUEUE_ROWS and self.error is None:
                self._cond.wait(0.1)
            self._raise()
            self._queue.append(record)
            self._queued_rows += rows
            self._cond.notify_all()

    def durable(self, source: str) -> int:
        with self._cond:
            return self._durable.get(source, 0)

    def wait(self, source: str, position: int, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until ``source`` is durable through
        ``position``; True once it is. Raises the writer's failure."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._durable.get(source, 0) < position:
                self._raise()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def flush(self, timeout: float | None = None) -> None:
        """Write and fsync everything queued so far; returns once it is on disk."""
        with self._cond:
            target = dict(self._queued_ends())
            self._flush_asked = True
            self._cond.notify_all()
        for source, position in target.items():
            while not self.wait(source, position, 0.1 if timeout is None else timeout):
                if timeout is not None:
                    raise TimeoutError("the write-ahead log did not flush in time")

    def _queued_ends(self) -> dict[str, int]:
        ends = dict(self._written)
        for record in self._queue:
            ends[record.source] = max(ends.get(record.source, 0), record.end)
        return ends

    def close(self) -> None:
        """Flush, stop the thread, close the segment."""
        if self._thread.is_alive():
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join()
        os.close(self._fd)

    def _raise(self) -> None:
        if self.error is not None:
            raise OSError(f"the write-ahead log failed: {self.error}") from self.error

    # -- the thread ----------------------------------------------------------------
    def _run(self) -> None:
        last_sync = time.monotonic()
        try:
            while True:
                with self._cond:
                    while not (self._queue or self._closing or self._flush_asked):
                        if not self._unsynced():
                            self._cond.wait()
                            continue
                        left = self.flush_interval - (time.monotonic() - last_sync)
                        if left <= 0:
                            break  # async: an fsync is due
                        self._cond.wait(left)
                    batch = list(self._queue)
                    self._queue.clear()
                    self._queued_rows = 0
                    urgent = self._flush_asked or self._closing or any(
                        r.source in self.sync_sources for r in batch)
                    self._flush_asked = False
                    closing = self._closing
                    self._cond.notify_all()  # the engine may be waiting for room
                for record in batch:
                    self._write(record)
                due = time.monotonic() - last_sync >= self.flush_interval
                if self._unsynced() and (urgent or due):
                    self._sync()
                    last_sync = time.monotonic()
                if closing:
                    return
        except BaseException as exc:  # surfaced to producers and the engine
            with self._cond:
                self.error = exc
                self._cond.notify_all()
            if self.on_error is not None:
                self.on_error(exc)

    def _unsynced(self) -> bool:
        return self._written != self._durable

    def _write(self, record: Record) -> None:
        head, payload = record.encode()
        size = len(head) + len(payload)
        done = os.writev(self._fd, [head, payload])
        if done < size:  # a short write: the rest, piece by piece
            rest = memoryview(head + memoryview(payload).tobytes())[done:]
            while rest:
                rest = rest[os.write(self._fd, rest):]
        self._size += size
        self.bytes_written += size
        ends = self.segment_ends[self._number]
        ends[record.source] = max(ends.get(record.source, 0), record.end)
        self._written[record.source] = max(self._written.get(record.source, 0), record.end)
        if self._size >= SEGMENT_BYTES:  # the next record starts a new segment
            self._sync()
            os.close(self._fd)
            self._number += 1
            self._fd = self._open(self._number)
            self._size = 0

    def _sync(self) -> None:
        written = dict(self._written)
        os.fdatasync(self._fd)
        self.fsyncs += 1
        with self._cond:
            self._durable = written
            self._cond.notify_all()

    # -- pruning -----------------------------------------------------------------------
    def prune(self, needed: dict[str, int]) -> int:
        """Remove every finished segment none of whose records reach past the
        positions ``needed`` (a checkpoint holds everything before them).
        Returns how many segments went."""
        removed = 0
        for number, path in segments(self.directory):
            if number >= self._number:
                break
            ends = self.segment_ends.get(number)
            if ends is None or any(end > needed.get(source, 0) for source, end in ends.items()):
                continue
            path.unlink()
            self.segment_ends.pop(number, None)
            removed += 1
        if removed:
            fsync_dir(self.directory)
        return removed
