"""A running materialized view: its plan compiled into stages, and its readers.

A view is a consumer of its input (a source's micro-batches from the
scheduler, or an upstream view's output) and a producer for its readers
(sinks and views stacked on it). Each micro-batch runs through the stages
bottom-up on the scheduler thread; whatever comes out, with the output
watermark, goes to every reader. A reader that fails is cut off at its edge
and reported to the engine (see `readers`); the view and its other readers
go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import polars as pl

from laminar_polars import _native
from laminar_polars.engine.aggregates import OP, Output, collect
from laminar_polars.engine.grid import GridWindows
from laminar_polars.engine.keyed import KeyedAggregate
from laminar_polars.engine.readers import Reader, deliver
from laminar_polars.engine.session import SessionWindows
from laminar_polars.plan import KeyedAgg, Node, RowMap, Scan, Step, WindowAgg, apply_steps

__all__ = ["OP", "Reader", "ViewRuntime"]


_SENTINELS = (_native.NO_WATERMARK, _native.CLOSED_WATERMARK)


class _RowStage:
    def __init__(self, node: RowMap) -> None:
        self.steps = node.steps

    def run(self, frame: pl.DataFrame, watermark: int) -> tuple[pl.DataFrame, int]:
        if not frame.height:
            return frame, watermark
        steps: Sequence[Step] = self.steps
        if OP in frame.columns:  # upserts keep their marker through projections
            steps = [Step(s.kind, (*s.exprs, pl.col(OP))) if s.kind == "select" else s
                     for s in steps]
        return collect(apply_steps(frame.lazy(), steps)), watermark


def _window_operator(node: WindowAgg, output: Output) -> GridWindows | SessionWindows:
    if node.window.kind != "session":
        return GridWindows(node, output)
    assert node.emit == "on_window_close", "validate() refuses sessions emitted on update"
    return SessionWindows(node, output)


class _AggregateStage:
    def __init__(self, node: WindowAgg | KeyedAgg) -> None:
        self.node = node
        self.operator: GridWindows | SessionWindows | KeyedAggregate
        if isinstance(node, WindowAgg):
            self.operator = _window_operator(node, self.output)
            self.lag = node.time_lag_us if node.time_column is not None else None
        else:
            self.operator = KeyedAggregate(node, self.output)
            self.lag = None
        self.nothing = pl.DataFrame(schema=node.schema)  # most batches emit no row

    def run(self, frame: pl.DataFrame, watermark: int) -> tuple[pl.DataFrame, int]:
        out = self.operator.process(frame, watermark)
        if self.lag is not None and watermark not in _SENTINELS:
            watermark -= self.lag
        return self.nothing if out is None else out, watermark

    def output(self, internal: pl.LazyFrame, extra: Sequence[str]) -> pl.LazyFrame:
        """HAVING, then the view's output columns (and ``extra``: the upsert marker)."""
        if self.node.having is not None:
            internal = internal.filter(self.node.having)
        return internal.select(*self.node.output, *extra)


def _compile(plan: Node) -> tuple[Scan, list[_RowStage | _AggregateStage]]:
    stages: list[_RowStage | _AggregateStage] = []
    node = plan
    while not isinstance(node, Scan):
        if isinstance(node, RowMap):
            stages.append(_RowStage(node))
        else:
            # Plans come checked (laminar_polars.plan.validate); the operators
            # assert what they rely on.
            assert node.input.appends_only, "validate() refuses aggregates over updates"
            stages.append(_AggregateStage(node))
        node = node.input
    stages.reverse()
    return node, stages


def _reraise(error: BaseException) -> None:
    raise error


class ViewRuntime:
    """Maintains one view; ``on_batch`` is called on the scheduler thread."""

    def __init__(self, name: str, plan: Node) -> None:
        self.name = name
        self.plan = plan
        self.scan, self.stages = _compile(plan)
        self.readers: list[Reader] = []
        # Told when one of the readers fails (the engine's `fail`, set when
        # the view is wired); unwired, the failure goes to the view's producer.
        self.on_failure: Callable[[BaseException], None] = _reraise
        self.ended = False
        self.end_error: BaseException | None = None
        self.rows_in = 0
        self.rows_out = 0
        self.watermark = _native.NO_WATERMARK
        self._appended: list[pl.DataFrame] = []  # a view without aggregate keeps its rows
        # A row-wise view over upserts derives its rows from its input's rows.
        self.upstream: ViewRuntime | None = None
        self._aggregate = next(
            (i for i in range(len(self.stages) - 1, -1, -1)
             if isinstance(self.stages[i], _AggregateStage)), None)

    @property
    def input(self) -> str:
        return self.scan.name

    @property
    def state_rows(self) -> int:
        return sum(s.operator.state_rows for s in self.stages if isinstance(s, _AggregateStage))

    @property
    def pending_rows(self) -> int:
        """Input rows taken but not merged into the state yet."""
        return sum(s.operator.pending_rows for s in self.stages if isinstance(s, _AggregateStage))

    def on_batch(self, frame: pl.DataFrame, watermark: int) -> None:
        taken = frame.height
        for stage in self.stages:
            frame, watermark = stage.run(frame, watermark)
        self.watermark = watermark
        if frame.height:
            self.rows_out += frame.height
            if self._aggregate is None and self.scan.appends_only:
                self._keep(frame)
        deliver(self.readers, frame, watermark, self.on_failure)
        for stage in self.stages:  # rows are out; now free what they came from
            if isinstance(stage, _AggregateStage):
                stage.operator.settle()
        self.rows_in += taken  # last: a reader of metrics sees the batch fully done

    def add_reader(self, reader: Reader) -> None:
        """Feed ``reader`` from now on; a view that has ended ends it at once."""
        self.readers.append(reader)
        if self.ended:  # after the append: on_end sets `ended` before it looks
            reader.on_end(self.end_error)

    def on_end(self, error: BaseException | None = None) -> None:
        """The input has ended (``error``: the engine failed): end every reader."""
        if self.ended:
            return
        self.ended, self.end_error = True, error
        for reader in list(self.readers):
            reader.on_end(error)

    def contents(self) -> pl.DataFrame:
        """The view's current rows: what ``db.query`` reads."""
        if self._aggregate is None and self.upstream is not None and \
                not self.scan.appends_only:
            frame = self.upstream.contents()
            for stage in self.stages:
                frame, _ = stage.run(frame, _native.NO_WATERMARK)
            frames = [frame]
        elif self._aggregate is None:
            frames = self._appended
        else:
            stage = self.stages[self._aggregate]
            assert isinstance(stage, _AggregateStage)
            rows = stage.operator.contents()
            frame = stage.nothing if rows is None else rows
            for above in self.stages[self._aggregate + 1:]:
                frame, _ = above.run(frame, _native.NO_WATERMARK)
            frames = [frame]
        if not frames:
            return pl.DataFrame(schema=self.plan.schema)
        return pl.concat(frames).drop(OP, strict=False)

    def _keep(self, frame: pl.DataFrame) -> None:
        kept = [*self._appended, frame]
        self._appended = [pl.concat(kept)] if len(kept) > 64 else kept
