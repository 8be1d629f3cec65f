"""The logical plan both front ends build and the engine runs (see `nodes`),
the aggregate registry (`aggregates`) and the one validation pass (`validate`)."""

from __future__ import annotations

from laminar_polars.plan.aggregates import AGGREGATES, AggFunc, AggregateFunction, aggregate
from laminar_polars.plan.joins import ASOF_MATCHED, JoinHow, join_kind
from laminar_polars.plan.nodes import (
    WINDOW_END,
    WINDOW_START,
    Agg,
    AsofJoin,
    EmitMode,
    EquiJoin,
    IntervalJoin,
    Join,
    KeyedAgg,
    LookupJoin,
    Node,
    RowMap,
    Scan,
    Step,
    Union,
    WindowAgg,
    WindowKind,
    WindowSpec,
    apply_steps,
    explain,
    inputs_of,
)
from laminar_polars.plan.validate import EMIT_MODES, Wording, emit_mode, validate

__all__ = [
    # aggregates
    "AGGREGATES",
    "AggFunc",
    "AggregateFunction",
    "aggregate",
    # joins
    "ASOF_MATCHED",
    "JoinHow",
    "join_kind",
    # nodes
    "WINDOW_END",
    "WINDOW_START",
    "Agg",
    "AsofJoin",
    "EmitMode",
    "EquiJoin",
    "IntervalJoin",
    "Join",
    "KeyedAgg",
    "LookupJoin",
    "Node",
    "RowMap",
    "Scan",
    "Step",
    "Union",
    "WindowAgg",
    "WindowKind",
    "WindowSpec",
    "apply_steps",
    "explain",
    "inputs_of",
    # validate
    "EMIT_MODES",
    "Wording",
    "emit_mode",
    "validate",
]
