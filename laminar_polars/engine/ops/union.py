"""`UnionOperator`: UNION ALL, every input's rows passed on as they come.

Each input's rows are at or after that input's watermark, hence at or after
the minimum the output carries: nothing to hold back. No state.
"""

from __future__ import annotations

from laminar_polars.engine.operator import Delta, Operator

__all__ = ["UnionOperator"]


class UnionOperator(Operator):
    """Passes the rows of its ``ports`` inputs on."""

    def __init__(self, ports: int) -> None:
        self.ports = ports

    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        return delta if delta.height else None
