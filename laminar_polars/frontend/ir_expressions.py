"""Expressions of the Polars IR, rebuilt as public ``pl.Expr`` objects.

`IRExpr` is a handle on one expression node of the plan that
`laminar_polars.frontend.polars_ir` read. `IRExpr.to_polars` walks that node's
IR and rebuilds it. The IR is Polars internals (version 16, which
`laminar_polars.frontend.polars_ir.read_plan` checks once for the whole front
end), so this module is one to revisit when Polars changes. Element-wise
functions come from the explicit table in `laminar_polars.frontend.ir_functions`;
in an aggregation context each aggregate is handed, as an `AggCall`, to the
caller. Anything else is refused with `PlanError` naming it, never guessed at.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any, Protocol

import polars as pl

from laminar_polars.errors import PlanError
from laminar_polars.frontend.ir_functions import ELEMENTWISE_FUNCTIONS, NOT_LITERAL
from laminar_polars.plan import AGGREGATES, AggFunc

__all__ = ["AggCall", "ColumnRef", "IRExpr", "IRExpressionReader", "OnAgg"]


class IRExpressionReader(Protocol):
    """What rebuilding needs from the plan reader: an expression node, by its id.

    A protocol rather than the reader's class so that this module does not
    import `polars_ir`, which imports it.
    """

    def view(self, node: int) -> Any: ...


@dataclasses.dataclass(frozen=True)
class AggCall:
    """One aggregate found in an aggregation expression.

    ``func`` is the plan's name of the function (a key of
    `laminar_polars.plan.AGGREGATES`); ``arg`` its element-wise input (None
    for ``count_star``).
    """

    func: AggFunc
    arg: pl.Expr | None


OnAgg = Callable[[AggCall], pl.Expr]


class IRExpr:
    """A named expression of the IR; `to_polars` rebuilds it as a ``pl.Expr``."""

    def __init__(self, reader: IRExpressionReader, node: int, name: str):
        self._reader = reader
        self._node = node
        self.name = name

    @property
    def column(self) -> str | None:
        """The column it reads, if it is a bare column reference."""
        expr = self._reader.view(self._node)
        return expr.name if type(expr).__name__ == "Column" else None

    def to_polars(self, on_agg: OnAgg | None = None, *, named: bool = True) -> pl.Expr:
        """The expression, aliased to its output name (unless ``named`` is False).

        Without ``on_agg`` the expression must be element-wise. With it (an
        aggregation context), each aggregate is handed to ``on_agg`` and
        replaced by the expression it returns; a column outside any aggregate
        is refused, as Polars would make it a list.
        """
        expr = _ExprBuilder(self._reader, on_agg).build(self._node)
        if not named or (expr.meta.is_column() and expr.meta.output_name() == self.name):
            return expr
        return expr.alias(self.name)

    def __repr__(self) -> str:
        return f"IRExpr({self.name!r})"


class ColumnRef(IRExpr):
    """A bare column reference made up by the reader (no IR node behind it)."""

    def __init__(self, name: str):
        self.name = name

    @property
    def column(self) -> str | None:
        return self.name

    def to_polars(self, on_agg: OnAgg | None = None, *, named: bool = True) -> pl.Expr:
        if on_agg is not None:
            raise PlanError(f"column {self.name!r} is used outside an aggregation")
        return pl.col(self.name)


_BINARY: dict[str, Callable[[pl.Expr, pl.Expr], pl.Expr]] = {
    "Eq": lambda a, b: a == b,
    "EqValidity": lambda a, b: a.eq_missing(b),
    "NotEq": lambda a, b: a != b,
    "NotEqValidity": lambda a, b: a.ne_missing(b),
    "Lt": lambda a, b: a < b,
    "LtEq": lambda a, b: a <= b,
    "Gt": lambda a, b: a > b,
    "GtEq": lambda a, b: a >= b,
    "Plus": lambda a, b: a + b,
    "Minus": lambda a, b: a - b,
    "Multiply": lambda a, b: a * b,
    "TrueDivide": lambda a, b: a / b,
    "FloorDivide": lambda a, b: a // b,
    "Modulus": lambda a, b: a % b,
    "And": lambda a, b: a & b,
    "Or": lambda a, b: a | b,
    "Xor": lambda a, b: a ^ b,
    "LogicalAnd": lambda a, b: a & b,
    "LogicalOr": lambda a, b: a | b,
}

# IR aggregate name -> the plan's (the registry's polars_name); pl.len() is a node
# of its own and count's options say whether it counts nulls.
_AGGS: dict[str, AggFunc] = {f.polars_name: f.name for f in AGGREGATES.values()
                             if f.takes_input}
_SUPPORTED = ", ".join(f.polars_name for f in AGGREGATES.values())
_AGG_NAMES = {"first_non_null": "first(ignore_nulls=True)",
              "last_non_null": "last(ignore_nulls=True)",
              "implode": "a column left unaggregated (Polars would implode it into a list)",
              "std": "std", "var": "var", "median": "median", "quantile": "quantile",
              "agg_groups": "agg_groups"}
_POLARS_AGGREGATES = {"quantile", "null_count", "arg_max", "arg_min", "product", "mode",
                      "bitwise_and", "bitwise_or", "bitwise_xor", "entropy", "kurtosis",
                      "skew", "approx_n_unique", "unique", "drop_nulls", "drop_nans"}


class _ExprBuilder:
    def __init__(self, reader: IRExpressionReader, on_agg: OnAgg | None):
        self.reader = reader
        self.on_agg = on_agg
        self.in_agg = False  # building the input of an aggregate

    @property
    def aggregating(self) -> bool:
        return self.on_agg is not None and not self.in_agg

    def build(self, node: int) -> pl.Expr:
        e = self.reader.view(node)
        kind = type(e).__name__
        if kind == "Column":
            if self.aggregating:
                raise PlanError(f"column {e.name!r} is used outside an aggregation: "
                                "Polars would implode it into a list")
            return pl.col(e.name)
        if kind == "Literal":
            return _literal(e.value, e.dtype)
        if kind == "Alias":
            return self.build(e.expr).alias(e.name)
        if kind == "BinaryExpr":
            op = str(e.op).rsplit(".", 1)[-1]
            if op not in _BINARY:
                raise PlanError(f"operator {op} is not supported in a materialized view")
            return _BINARY[op](self.build(e.left), self.build(e.right))
        if kind == "Cast":
            strict, wrap = {0: (True, False), 1: (False, False), 2: (False, True)}[e.options]
            return self.build(e.expr).cast(e.dtype, strict=strict, wrap_numerical=wrap)
        if kind == "Ternary":
            return (pl.when(self.build(e.predicate)).then(self.build(e.truthy))
                    .otherwise(self.build(e.falsy)))
        if kind == "Len":
            return self._aggregate("count_star", None, "len")
        if kind == "Agg":
            return self._agg(e)
        if kind == "Function":
            return self._function(e)
        if kind == "Window":
            raise PlanError(".over(...) (a window expression) cannot be maintained "
                            "incrementally by a materialized view")
        what = {"Sort": "sort", "SortBy": "sort_by", "Gather": "gather/get",
                "Filter": "filter inside an expression", "Slice": "slice/head/tail",
                "Explode": "explode", "Rolling": "rolling expressions"}.get(kind, kind)
        raise PlanError(f"{what} is not supported in a materialized view expression")

    def _aggregate(self, func: AggFunc, arg: int | None, polars_name: str) -> pl.Expr:
        if self.on_agg is None:
            raise PlanError(f"aggregation {polars_name}() in a row-wise step (select, "
                            "with_columns or filter) cannot be maintained; aggregate with "
                            "group_by or group_by_dynamic")
        if self.in_agg:
            raise PlanError(f"nested aggregation {polars_name}() is not supported")
        arg_expr = None
        if arg is not None:
            self.in_agg = True
            try:
                arg_expr = self.build(arg)
            finally:
                self.in_agg = False
            if not arg_expr.meta.root_names():
                raise PlanError(f"{polars_name}() of an expression that reads no column "
                                "is not supported")
        return self.on_agg(AggCall(func, arg_expr))

    def _agg(self, e: Any) -> pl.Expr:
        name, options = e.name, e.options
        (arg,) = e.arguments
        if name == "count":
            # options: include nulls (Expr.len) or not (Expr.count)
            return self._aggregate("count_star" if options else "count",
                                   None if options else arg, "len" if options else "count")
        if name in ("min", "max") and options:
            name = f"nan_{name}"
        if name not in _AGGS:
            raise PlanError(f"aggregation {_AGG_NAMES.get(name, name)} is not supported; "
                            f"supported: {_SUPPORTED}")
        return self._aggregate(_AGGS[name], arg, name)

    def _function(self, e: Any) -> pl.Expr:
        data = tuple(e.function_data)
        head = data[0]
        key = head if isinstance(head, str) else str(head)
        fn = ELEMENTWISE_FUNCTIONS.get(key)
        if fn is None:
            label = _api_name(key)
            if self.aggregating and key in _POLARS_AGGREGATES:
                raise PlanError(f"aggregation {label} is not supported; "
                                f"supported: {_SUPPORTED}")
            raise PlanError(f"function {label} is not supported in a materialized view "
                            "(only element-wise functions are)")
        args = [self.build(i) for i in e.input]
        lits = [self._literal_value(i) for i in e.input]
        return fn(args, data[1:], lits)

    def _literal_value(self, node: int) -> Any:
        e = self.reader.view(node)
        return e.value if type(e).__name__ == "Literal" else NOT_LITERAL


_NAMESPACES = {"BooleanFunction": "", "StringFunction": "str.", "TemporalFunction": "dt.",
               "ListFunction": "list.", "ArrayFunction": "arr.", "StructFunction": "struct.",
               "RollingFunction": "rolling_", "EwmFunction": "ewm_"}


def _api_name(key: str) -> str:
    """``'StringFunction.ToInteger'`` -> ``'str.to_integer'``; plain names unchanged."""
    if "." not in key:
        return key
    namespace, name = key.split(".", 1)
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()
    return _NAMESPACES.get(namespace, namespace + ".") + snake


def _literal(value: Any, dtype: pl.DataType) -> pl.Expr:
    if type(value).__name__ == "PySeries":
        raise PlanError("a Series literal cannot be used in a materialized view")
    if dtype == pl.Null:
        return pl.lit(None)
    if isinstance(dtype, pl.List):
        return pl.lit(pl.Series([value], dtype=dtype))
    return pl.lit(value, dtype=dtype)
