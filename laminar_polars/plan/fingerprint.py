"""A plan's fingerprint: a short hash of everything that decides its state.

A checkpoint records each view's fingerprint; recovery restores a view's state
only into a view whose plan has the same one (a changed definition starts
empty). The walk covers every field of every node: expressions by their
serialized form (their text leaves out a literal list's values: ``x IN (1, 2)``
prints as ``col("x").is_in([Series])``), schemas by their column names and
types, nested nodes recursively.

>>> import polars as pl
>>> from laminar_polars.plan import RowMap, Scan, Step
>>> scan = Scan("t", pl.Schema({"x": pl.Int64}))
>>> one = RowMap(scan, (Step("filter", (pl.col("x") > 1,)),))
>>> two = RowMap(scan, (Step("filter", (pl.col("x") > 2,)),))
>>> fingerprint(one) == fingerprint(RowMap(scan, (Step("filter", (pl.col("x") > 1,)),)))
True
>>> fingerprint(one) == fingerprint(two)
False
>>> listed = [RowMap(scan, (Step("filter", (pl.col("x").is_in(pl.Series(values)),)),))
...           for values in ([1, 2], [3, 4])]
>>> fingerprint(listed[0]) == fingerprint(listed[1])
False
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import polars as pl

__all__ = ["fingerprint"]


def _text(value: Any) -> str:
    if isinstance(value, pl.Expr):
        return f"expr({value.meta.serialize(format='json')})"
    if isinstance(value, pl.Schema):
        return "schema(" + ",".join(f"{k}:{v}" for k, v in value.items()) + ")"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ",".join(f"{f.name}={_text(getattr(value, f.name))}"
                          for f in dataclasses.fields(value))
        return f"{type(value).__name__}({fields})"
    if isinstance(value, (tuple, list)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return repr(value)


def fingerprint(value: Any) -> str:
    """A 16-hex-digit hash of ``value``: a plan node, or any definition built of
    dataclasses, Polars expressions and schemas, and plain values."""
    return hashlib.sha256(_text(value).encode()).hexdigest()[:16]
