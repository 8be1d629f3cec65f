"""The operator graph: every view compiled into nodes, joined by edges.

A `Node` holds one `Operator`, the watermark of each of its input ports, and
its readers (nodes of views stacked on it, sinks' feeds). A view's plan
becomes a chain of nodes (`compile_view`): a row map, an aggregate, a row map
above it, and, for a view that appends, a `History` keeping its rows for
``db.query``. A view stacked on another is an edge from that view's last node
to this view's first, not a pointer set from outside; sources feed the first
node of the views that read them through the scheduler.

A batch travels depth first: a node runs its operator's ``on_batch`` and, if
the minimum of its ports' watermarks moved, ``on_watermark``, hands what came
out to every reader (`deliver`: a reader that fails is cut off at its edge),
then lets the operator ``settle``. Only the scheduler thread runs nodes; between
micro-batches (the barrier) every operator's state is consistent, which is
where snapshots are taken (`View.snapshot`) and ``db.query`` reads
(`View.contents` computes a view's rows from snapshots, on any thread).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Executor

import polars as pl

from laminar_polars.config import UNBOUNDED, Retention
from laminar_polars.engine.operator import Delta, Operator, State
from laminar_polars.engine.ops.asof import AsofJoinOperator
from laminar_polars.engine.ops.equi import EquiJoinOperator
from laminar_polars.engine.ops.grid import GridWindows
from laminar_polars.engine.ops.history import History
from laminar_polars.engine.ops.interval import IntervalJoinOperator
from laminar_polars.engine.ops.keyed import KeyedAggregate
from laminar_polars.engine.ops.lookup import LookupJoinOperator
from laminar_polars.engine.ops.row_map import RowMapOperator
from laminar_polars.engine.ops.session import SessionWindows
from laminar_polars.engine.ops.sharded import Sharded
from laminar_polars.engine.ops.union import UnionOperator
from laminar_polars.engine.readers import Reader, deliver
from laminar_polars.engine.sentinels import NO_WATERMARK
from laminar_polars.errors import CatalogError, PlanError
from laminar_polars.plan import (
    WINDOW_END,
    WINDOW_START,
    AsofJoin,
    EquiJoin,
    IntervalJoin,
    KeyedAgg,
    LookupJoin,
    RowMap,
    Scan,
    Union,
    WindowAgg,
    inputs_of,
    join_kind,
)
from laminar_polars.plan import Node as PlanNode

__all__ = ["Node", "Port", "View", "compile_view"]


def _reraise(error: BaseException) -> None:
    raise error


class Node:
    """One operator of the graph, its ports' watermarks and its readers.

    ``inputs`` has, per port, the node feeding it or the name of the source
    feeding it. ``rows_in`` counts each port's rows once their batch went all
    the way through (a reader of metrics sees whole batches).
    """

    def __init__(self, operator: Operator, schema: pl.Schema, view: str) -> None:
        self.operator = operator
        self.view = view
        self.schema = schema
        self.nothing = Delta(pl.DataFrame(schema=schema))  # most batches emit no row
        self.inputs: list[Node | str] = []
        self.port_watermarks = [NO_WATERMARK] * operator.ports
        self.watermark = NO_WATERMARK  # the minimum of the ports', as on_watermark saw it
        self.readers: list[Reader] = []
        # Told when a reader fails (the engine's `fail`, set when wired).
        self.on_failure: Callable[[BaseException], None] = _reraise
        self.ended_ports = 0
        self.ended = False
        self.end_error: BaseException | None = None
        self.rows_in = [0] * operator.ports  # per port
        self.rows_out = 0
        self.step: PlanNode | None = None  # the plan node it runs (set by compile_view)

    @property
    def output_watermark(self) -> int:
        return self.operator.output_watermark(self.watermark)

    def rows_in_on(self, port: int) -> int:
        """Rows taken on ``port``, counted once their batch went all the way through."""
        return self.rows_in[port]

    def port(self, index: int = 0) -> Port:
        return Port(self, index)

    def receive(self, port: int, delta: Delta, watermark: int) -> None:
        """A batch (and its watermark) arrived on ``port``: run the operator,
        hand its rows on, then let it settle."""
        out = self.operator.on_batch(port, delta) if delta.height else None
        if watermark > self.port_watermarks[port]:
            self.port_watermarks[port] = watermark
            if self.operator.ports > 1:  # a join: matches are final by one side's watermark
                released = self.operator.on_port_watermark(port, watermark)
                if released is not None:
                    out = released if out is None else _concat(out, released)
        low = min(self.port_watermarks)
        if low > self.watermark:
            self.watermark = low
            released = self.operator.on_watermark(low)
            out = released if out is None else _concat(out, released)
        if out is not None and out.height:
            self.rows_out += out.height
        deliver(self.readers, self.nothing if out is None else out, self.output_watermark,
                self.on_failure)
        self.operator.settle()  # the rows are out: free what they came from
        self.rows_in[port] += delta.height

    def add_reader(self, reader: Reader) -> None:
        """Feed ``reader`` from now on; a node that has ended ends it at once."""
        self.readers.append(reader)
        if self.ended:  # after the append: end() sets `ended` before it looks
            reader.on_end(self.end_error)

    def remove_reader(self, reader: Reader) -> None:
        if reader in self.readers:
            self.readers.remove(reader)

    def end(self, error: BaseException | None = None) -> None:
        """An input ended (``error``: the engine failed): once every port has
        ended, or at the first failure, every reader ends."""
        self.ended_ports += 1
        if self.ended or (error is None and self.ended_ports < self.operator.ports):
            return
        self.ended, self.end_error = True, error
        for reader in list(self.readers):
            reader.on_end(error)

    # -- state ---------------------------------------------------------------------
    def snapshot(self) -> State:
        """The operator's state, with the node's own: its ports' watermarks."""
        state = self.operator.snapshot()
        marks = {f"node.port{i}": w for i, w in enumerate(self.port_watermarks)}
        return State(state.frames, {**state.scalars, **marks, "node.watermark": self.watermark})

    def restore(self, state: State) -> None:
        self.port_watermarks = [state.scalar(f"node.port{i}", NO_WATERMARK)
                                for i in range(self.operator.ports)]
        self.watermark = state.scalar("node.watermark", NO_WATERMARK)
        self.operator.restore(state)

    def contents(self, states: Mapping[Node, State]) -> pl.DataFrame | None:
        """The rows this node's output stands for in ``states`` (a snapshot of
        every node), or None if it holds none (a source feeds it)."""
        rows = self.operator.contents(states[self])
        if rows is not None or not isinstance(self.operator, RowMapOperator):
            return rows
        upstream = self.inputs[0]
        below = None if isinstance(upstream, str) else upstream.contents(states)
        return None if below is None else self.operator.apply(below)


class Port:
    """Input ``index`` of ``node``, as a reader of its upstream."""

    __slots__ = ("index", "node")

    def __init__(self, node: Node, index: int) -> None:
        self.node = node
        self.index = index

    def on_batch(self, delta: Delta, watermark: int) -> None:
        self.node.receive(self.index, delta, watermark)

    def on_end(self, error: BaseException | None = None) -> None:
        self.node.end(error)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Port) and (other.node, other.index) == (self.node, self.index)

    def __hash__(self) -> int:
        return hash((id(self.node), self.index))


def _concat(first: Delta, second: Delta | None) -> Delta:
    if second is None or not second.height:
        return first
    if not first.height:
        return second
    rows = pl.concat([first.rows, second.rows], how="vertical")
    if first.new is None or second.new is None:
        return Delta(rows)
    return Delta(rows, pl.concat([first.new, second.new]))


class View:
    """A materialized view in the graph: its nodes (inputs before the nodes
    reading them, its output last) and its entry ports: for each scan of a
    source or view, the port of the node that reads it. ``history`` keeps an
    appending view's rows."""

    def __init__(self, name: str, plan: PlanNode, nodes: list[Node],
                 entries: list[tuple[str, Port]], history: Node | None) -> None:
        self.name = name
        self.plan = plan
        self.nodes = nodes
        self.entries = entries
        self.history = history
        self.output = nodes[-1]

    @property
    def inputs(self) -> list[str]:
        """The sources and views it reads, each once, in plan order."""
        return list(dict.fromkeys(name for name, _ in self.entries))

    # -- metrics -------------------------------------------------------------------
    @property
    def rows_in(self) -> int:
        """Rows taken from its inputs, counted once their batch went through."""
        return sum(port.node.rows_in_on(port.index) for _, port in self.entries)

    @property
    def rows_out(self) -> int:
        return self.output.rows_out  # a history passes its rows through

    @property
    def state_rows(self) -> int:
        return sum(n.operator.state_rows for n in self.nodes)

    @property
    def pending_rows(self) -> int:
        return sum(n.operator.pending_rows for n in self.nodes)

    @property
    def retained_rows(self) -> int:
        """Rows of its history kept for db.query (EMIT ON UPDATE: closed windows')."""
        return sum(n.operator.retained_rows for n in self.nodes)

    @property
    def watermark(self) -> int:
        return self.output.output_watermark

    @property
    def joins(self) -> list[dict[str, object]]:
        """Counters of each join the view runs, inner joins first: its kind,
        the sources and views each side reads, and per side the rows taken,
        held, freed and dropped as late, the pairs emitted (``matches``) and
        the left rows emitted without a match (``unmatched``)."""
        out: list[dict[str, object]] = []
        for node in self.nodes:
            step = node.step
            if not isinstance(step, AsofJoin | IntervalJoin | EquiJoin | LookupJoin):
                continue
            sides = [step.left] if isinstance(step, LookupJoin) else [step.left, step.right]
            counters = node.operator.counters
            entry: dict[str, object] = {"kind": join_kind(step),
                                        "matches": counters.get("matches", 0),
                                        "unmatched": counters.get("unmatched", 0)}
            for side, child in zip(("left", "right"), sides, strict=False):
                entry[side] = {"inputs": inputs_of(child),
                               **{what: counters.get(f"{side}_{what}", 0)
                                  for what in ("rows_in", "state_rows", "freed", "late")}}
            if isinstance(step, LookupJoin):
                entry["table"] = step.table_name
            out.append(entry)
        return out

    # -- state -----------------------------------------------------------------------
    def snapshot(self) -> list[State]:
        """Every node's state now, in node order (call at a barrier: cheap,
        references to immutable frames)."""
        return [node.snapshot() for node in self.nodes]

    def restore(self, states: list[State]) -> None:
        """Take over `snapshot`'s states (from a view compiled from the same
        plan), before the view gets any row."""
        if len(states) != len(self.nodes):
            raise ValueError(f"view {self.name!r} has {len(self.nodes)} nodes, the snapshot "
                             f"{len(states)}")
        for node, state in zip(self.nodes, states, strict=True):
            node.restore(state)

    def contents(self, states: Mapping[Node, State]) -> pl.DataFrame:
        """The view's rows in ``states`` (which must hold every node this view
        reads through, upstream views' included)."""
        rows = self.output.contents(states)
        return pl.DataFrame(schema=self.plan.schema) if rows is None else rows


def _no_tables(name: str) -> pl.DataFrame:
    raise CatalogError(f"unknown table {name!r}")


def compile_view(name: str, plan: PlanNode, retention: Retention = UNBOUNDED,
                 resolve: Callable[[str], Node | None] = lambda _: None,
                 workers: int = 1, pool: Executor | None = None,
                 tables: Callable[[str], pl.DataFrame] = _no_tables) -> View:
    """The nodes of view ``name``: one per plan node above its scans (an
    operator with a port per input), and a `History` last when the view
    appends. ``resolve(scan name)`` gives the output node of a view the plan
    reads (None: a source), recorded as the reading node's input; the caller
    wires each entry port to its source or view. Operators grouping by keys
    (joins by their equi-keys) are split across ``workers`` copies run on
    ``pool`` (`Sharded`). ``tables(name)`` gives a registered table's rows
    now (a lookup join reads it for every batch)."""
    if retention.time_us is not None and plan.time_column is None and not any(
            isinstance(step, WindowAgg) and step.emit == "on_update" and step.time_output
            for step in _steps(plan)):
        raise PlanError(f"view {name!r}: a retention by event time needs an event-time column "
                        "in the view's output (e.g. its window start or end); keep rows "
                        "instead (retention = <number of rows>)")
    nodes: list[Node] = []
    entries: list[tuple[str, Port]] = []

    def build(step: PlanNode) -> Node:
        graph_node = Node(_operator(step, retention, workers, pool, tables), step.schema, name)
        graph_node.step = step
        for port, child in enumerate(step.inputs):
            if isinstance(child, Scan):
                graph_node.inputs.append(resolve(child.name) or child.name)
                entries.append((child.name, graph_node.port(port)))
            else:
                below = build(child)
                graph_node.inputs.append(below)
                below.add_reader(graph_node.port(port))
        nodes.append(graph_node)
        return graph_node

    if isinstance(plan, Scan):  # the view is its input as is: a row map without steps
        build(RowMap(plan, ()))
    else:
        build(plan)
    if plan.appends_only:
        history = Node(History(retention, plan.time_column), plan.schema, name)
        history.inputs = [nodes[-1]]
        nodes[-1].add_reader(history.port(0))
        nodes.append(history)
        return View(name, plan, nodes, entries, history)
    return View(name, plan, nodes, entries, None)


def _steps(plan: PlanNode) -> Iterable[PlanNode]:
    """Every node of a plan above its scans."""
    if not isinstance(plan, Scan):
        yield plan
        for child in plan.inputs:
            yield from _steps(child)


def _operator(node: PlanNode, retention: Retention, workers: int,
              pool: Executor | None, tables: Callable[[str], pl.DataFrame]) -> Operator:
    if isinstance(node, RowMap):
        return RowMapOperator(node)
    if isinstance(node, Union):
        return UnionOperator(len(node.inputs))
    if isinstance(node, LookupJoin):
        # Stateless, so nothing to split: one call per batch with the table as it is.
        frame, table = node.frame, node.table_name
        read = (lambda: frame) if frame is not None else (lambda: tables(table or ""))
        return LookupJoinOperator(node, read)
    if isinstance(node, AsofJoin | IntervalJoin | EquiJoin):
        return _join_operator(node, workers, pool)
    make: Callable[[], Operator]
    if isinstance(node, KeyedAgg):
        step: KeyedAgg | WindowAgg = node
        make = lambda: KeyedAggregate(node)  # noqa: E731
    else:
        assert isinstance(node, WindowAgg)
        step = node
        make = (lambda: SessionWindows(node)) if node.window.kind == "session" \
            else (lambda: GridWindows(node, retention))
    if not step.keys:
        return make()  # one group: nothing to split
    return Sharded(make, step.keys, workers, pool, _order(step))


def _join_operator(node: AsofJoin | IntervalJoin | EquiJoin, workers: int,
                   pool: Executor | None) -> Operator:
    """A stream-stream join, split by its equi-keys across workers (a join
    without any runs as one copy)."""
    make: Callable[[], Operator]
    if isinstance(node, AsofJoin):
        keys = (node.left_by, node.right_by)
        make = lambda: AsofJoinOperator(node)  # noqa: E731
    elif isinstance(node, IntervalJoin):
        keys = (node.left_keys, node.right_keys)
        make = lambda: IntervalJoinOperator(node)  # noqa: E731
    else:
        keys = (node.left_on, node.right_on)
        make = lambda: EquiJoinOperator(node)  # noqa: E731
    if not keys[0]:
        return make()
    return Sharded(make, keys[0], workers, pool, right_keys=keys[1])


def _order(node: KeyedAgg | WindowAgg) -> list[str]:
    """The output columns closed windows go out in order of, as one operator
    emits them: the window's start (else its end), then the keys (those the
    output has, by their output names)."""
    if not isinstance(node, WindowAgg):
        return []
    plain: dict[str, str] = {}
    for expr in node.output:
        root = expr.meta.undo_aliases()
        if root.meta.is_column():
            plain.setdefault(root.meta.output_name(), expr.meta.output_name())
    bound = plain.get(WINDOW_START, plain.get(WINDOW_END))
    return [*([bound] if bound else []), *(plain[k] for k in node.keys if k in plain)]


def iter_nodes(views: Iterable[View]) -> Iterable[Node]:
    for view in views:
        yield from view.nodes
