"""Checkpoints: every view's operator state as Parquet files, and a manifest.

A checkpoint is a directory ``checkpoints/<id>/``: one Parquet file per frame
of each node's state (``v<view>.n<node>.<frame>.parquet``), and
``manifest.json``, written last by an atomic rename once every file is
fsynced. The manifest holds, per source, the position the checkpoint covers
(rows accepted, taken or dropped) and its watermark and fingerprint; per view,
its plan's fingerprint and, per node, its scalars and its files' sizes and
CRC-32C. A directory without a manifest was not finished; a file whose size or
checksum does not match makes the checkpoint corrupt (`CorruptCheckpoint`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from laminar_polars import _native
from laminar_polars.durability.layout import atomic_write, checkpoint_ids, fsync_dir
from laminar_polars.engine.operator import State

__all__ = [
    "Checkpoint",
    "CorruptCheckpoint",
    "SourceMark",
    "ViewState",
    "complete_ids",
    "load_checkpoint",
    "prune_checkpoints",
    "write_checkpoint",
]

FORMAT = 1
MANIFEST = "manifest.json"


class CorruptCheckpoint(Exception):
    """A checkpoint whose manifest or files cannot be trusted."""


@dataclasses.dataclass(frozen=True)
class SourceMark:
    """Where a checkpoint stands in a source: ``position`` rows accepted
    (taken or dropped) and the watermark they went through the graph with."""

    position: int
    watermark: int
    fingerprint: str


@dataclasses.dataclass(frozen=True)
class ViewState:
    fingerprint: str
    nodes: list[State]


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    id: int
    created: dt.datetime
    sources: dict[str, SourceMark]
    views: dict[str, ViewState]
    bytes: int


def _write_file(path: Path, frame: pl.DataFrame) -> dict[str, Any]:
    buffer = io.BytesIO()
    frame.write_parquet(buffer, statistics=False)
    data = buffer.getbuffer()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)
    return {"file": path.name, "size": len(data), "crc32c": _native.crc32c(data)}


def write_checkpoint(directory: Path, checkpoint_id: int, sources: Mapping[str, SourceMark],
                     views: Mapping[str, ViewState]) -> Checkpoint:
    """Write checkpoint ``checkpoint_id`` under ``directory`` (checkpoints/)."""
    target = directory / str(checkpoint_id)
    if target.exists():  # a leftover of a run that crashed while writing it
        shutil.rmtree(target)
    target.mkdir(parents=True)
    total = 0
    manifest_views: dict[str, Any] = {}
    for v, (name, view) in enumerate(sorted(views.items())):
        nodes = []
        for n, state in enumerate(view.nodes):
            files = {}
            for frame_name, frame in state.frames.items():
                entry = _write_file(target / f"v{v}.n{n}.{frame_name}.parquet", frame)
                total += entry["size"]
                files[frame_name] = entry
            nodes.append({"scalars": dict(state.scalars), "frames": files})
        manifest_views[name] = {"fingerprint": view.fingerprint, "nodes": nodes}
    fsync_dir(target)
    created = dt.datetime.now(dt.timezone.utc)
    manifest = {
        "format": FORMAT, "id": checkpoint_id, "created": created.isoformat(),
        "sources": {name: dataclasses.asdict(mark) for name, mark in sources.items()},
        "views": manifest_views,
    }
    atomic_write(target / MANIFEST, json.dumps(manifest, indent=1).encode())
    fsync_dir(directory)
    return Checkpoint(checkpoint_id, created, dict(sources), dict(views), total)


def load_checkpoint(directory: Path, checkpoint_id: int) -> Checkpoint:
    """Read and verify checkpoint ``checkpoint_id``; `CorruptCheckpoint` if its
    manifest is missing or unreadable or a file's size or checksum is wrong."""
    target = directory / str(checkpoint_id)
    try:
        manifest = json.loads((target / MANIFEST).read_bytes())
        if manifest.get("format") != FORMAT:
            raise CorruptCheckpoint(f"checkpoint {checkpoint_id}: unknown format "
                                    f"{manifest.get('format')!r}")
        sources = {name: SourceMark(**mark) for name, mark in manifest["sources"].items()}
        views: dict[str, ViewState] = {}
        total = 0
        for name, view in manifest["views"].items():
            nodes = []
            for node in view["nodes"]:
                frames = {}
                for frame_name, entry in node["frames"].items():
                    data = (target / entry["file"]).read_bytes()
                    if len(data) != entry["size"] or _native.crc32c(data) != entry["crc32c"]:
                        raise CorruptCheckpoint(f"checkpoint {checkpoint_id}: file "
                                                f"{entry['file']} does not match its checksum")
                    total += len(data)
                    frames[frame_name] = pl.read_parquet(io.BytesIO(data))
                nodes.append(State(frames, node["scalars"]))
            views[name] = ViewState(view["fingerprint"], nodes)
        created = dt.datetime.fromisoformat(manifest["created"])
    except CorruptCheckpoint:
        raise
    except (OSError, ValueError, KeyError, TypeError, pl.exceptions.PolarsError) as error:
        raise CorruptCheckpoint(f"checkpoint {checkpoint_id}: {error}") from error
    return Checkpoint(checkpoint_id, created, sources, views, total)


def complete_ids(directory: Path) -> list[int]:
    """Ids of the checkpoints that have a manifest, oldest first."""
    return [i for i in checkpoint_ids(directory) if (directory / str(i) / MANIFEST).exists()]


def prune_checkpoints(directory: Path, keep: int) -> list[int]:
    """Remove all but the newest ``keep`` complete checkpoints (and unfinished
    ones older than the newest); returns the ids kept, oldest first."""
    complete = complete_ids(directory)
    kept = complete[-keep:] if keep > 0 else []
    newest = complete[-1] if complete else None
    for checkpoint_id in checkpoint_ids(directory):
        if checkpoint_id in kept or (newest is not None and checkpoint_id > newest):
            continue
        shutil.rmtree(directory / str(checkpoint_id), ignore_errors=True)
    if complete:
        fsync_dir(directory)
    return kept
