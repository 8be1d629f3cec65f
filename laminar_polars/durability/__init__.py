"""Durable state under ``data_dir``: the write-ahead log (`wal`), checkpoints
(`checkpoint`), and recovering from both (`manager.Durability`)."""

from __future__ import annotations

from laminar_polars.durability.manager import Durability, Snapshot

__all__ = ["Durability", "Snapshot"]
