"""The logical plan both front ends build and the engine runs (see `nodes`)."""

from __future__ import annotations

from laminar_polars.plan.nodes import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    AggFunc,
    KeyedAgg,
    Node,
    RowMap,
    Scan,
    Step,
    WindowAgg,
    WindowSpec,
    apply_steps,
    explain,
    inputs_of,
)

__all__ = [
    "WINDOW_END",
    "WINDOW_START",
    "Agg",
    "AggFunc",
    "KeyedAgg",
    "Node",
    "RowMap",
    "Scan",
    "Step",
    "WindowAgg",
    "WindowSpec",
    "apply_steps",
    "explain",
    "inputs_of",
]
