"""Where durable state lives under ``data_dir``, and writing files so a crash
leaves either the old or the new version, never a torn one.

::

    data_dir/
      wal/0000000000000001.wal ...       the write-ahead log, in segments
      checkpoints/<id>/manifest.json     a checkpoint: written last, by rename
      checkpoints/<id>/v0.n1.state.parquet   one file per operator state frame
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "atomic_write",
    "checkpoint_ids",
    "checkpoints_dir",
    "fsync_dir",
    "segment_path",
    "segments",
    "wal_dir",
]


def wal_dir(data_dir: Path) -> Path:
    return data_dir / "wal"


def checkpoints_dir(data_dir: Path) -> Path:
    return data_dir / "checkpoints"


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"{number:016d}.wal"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The WAL's segments, oldest first."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.suffix == ".wal" and path.stem.isdigit():
            found.append((int(path.stem), path))
    return sorted(found)


def checkpoint_ids(directory: Path) -> list[int]:
    """Ids of the checkpoint directories, oldest first (complete or not)."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def fsync_dir(directory: Path) -> None:
    """Make a directory's entries (files created, renamed, removed) durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """``data`` into ``path`` so that a crash leaves the old file or the new
    one: written beside it, fsynced, renamed over it, the directory fsynced."""
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    fsync_dir(path.parent)
