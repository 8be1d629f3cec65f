"""The Polars front end: a user's LazyFrame becomes a logical plan.

``db.stream(name)`` hands out `stream` placeholders; ``db.create_materialized_view``
calls `plan_lazyframe`. `polars_ir` (with `ir_expressions` and `ir_functions`)
holds every access to Polars internals; `translate` holds the meaning.

>>> import polars as pl
>>> from laminar_polars.plan import Scan, RowMap
>>> trades = Scan("trades", pl.Schema({"price": pl.Float64, "qty": pl.Int64}))
>>> view = stream(trades).filter(pl.col("qty") > 0).with_columns(
...     notional=pl.col("price") * pl.col("qty"))
>>> plan = plan_lazyframe(view, {"trades": trades}.__getitem__, emit=None)
>>> isinstance(plan, RowMap), [step.kind for step in plan.steps]
(True, ['filter', 'with_columns'])
"""

from __future__ import annotations

from laminar_polars.frontend.translate import plan_lazyframe, stream

__all__ = ["plan_lazyframe", "stream"]
