"""The one shape of every step of the engine: `Operator`.

Like Bytewax's stateful logic and the Disruptor's event handlers, every step of
a view — a row-wise map, a window aggregate, a continuous aggregate, a view's
retained history — is an operator with the same five methods, called on the
scheduler thread only:

- ``on_batch(port, delta)``: rows arrived on an input port; returns the rows
  to send downstream now, if any (a row map's output, EMIT ON UPDATE rows);
- ``on_watermark(watermark)``: the minimum of the input ports' watermarks
  moved forward; returns the rows it releases (closed windows), if any;
  an operator with several inputs that needs each one's watermark (a join)
  is also told of every port's own (``on_port_watermark``), first;
- ``settle()``: the rows returned went downstream; tidy up off their path;
- ``snapshot()`` / ``restore(state)``: the operator's durable state as named
  Polars frames and scalars (`State`); caches are left out and rebuilt;
- ``contents(state)``: the rows the operator's output stands for in that
  state, for ``db.query`` (an upserting operator's table, a history's rows).

Rows travel as a `Delta`: appended rows, or upserts (a key's new values) with a
mask saying which keys are new, instead of a magic string column.

State is never mutated in place: an operator rebinds its attributes to new
frames, so `snapshot` is cheap (references) and a snapshot taken at a barrier
between micro-batches stays valid while the engine goes on.

Examples
--------
>>> import polars as pl
>>> class Count(Operator):
...     def __init__(self):
...         self.n = 0
...     def on_batch(self, port, delta):
...         self.n += delta.rows.height
...         return None
...     def snapshot(self):
...         return State(scalars={"n": self.n})
...     def restore(self, state):
...         self.n = state.scalar("n", 0)
>>> op = Count()
>>> op.on_batch(0, Delta(pl.DataFrame({"x": [1, 2]})))
>>> copy = Count()
>>> copy.restore(op.snapshot())
>>> copy.n
2
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from typing import Any

import polars as pl

__all__ = ["Delta", "Operator", "Scalar", "State"]

Scalar = int | float | str | bool | None


@dataclasses.dataclass(frozen=True)
class Delta:
    """Rows moving from one operator to the next.

    ``new`` is None for appended rows. For upserts (each row a key's new
    values) it is a Boolean Series, True where the key is new (an insert) and
    False where it replaces an earlier row of that key (an update).
    """

    rows: pl.DataFrame
    new: pl.Series | None = None

    @property
    def upserts(self) -> bool:
        return self.new is not None

    @property
    def height(self) -> int:
        return self.rows.height

    def map(self, rows: pl.DataFrame, new: pl.Series | None = None) -> Delta:
        """The same kind of delta over other rows (``new`` for upserts)."""
        return Delta(rows, new if self.upserts else None)


@dataclasses.dataclass(frozen=True)
class State:
    """An operator's durable state: named frames and scalars.

    Checkpoints write each frame as a Parquet file and the scalars into the
    manifest, so both must survive that round trip (no Python objects).
    """

    frames: Mapping[str, pl.DataFrame] = dataclasses.field(default_factory=dict)
    scalars: Mapping[str, Scalar] = dataclasses.field(default_factory=dict)

    def frame(self, name: str) -> pl.DataFrame | None:
        return self.frames.get(name)

    def scalar(self, name: str, default: Any = None) -> Any:
        return self.scalars.get(name, default)


class Operator(abc.ABC):
    """A step of the engine's graph (see the module docstring).

    Subclasses implement `on_batch`; the rest default to a stateless step.
    ``ports`` is the number of inputs (2 for a join).
    """

    ports: int = 1

    @abc.abstractmethod
    def on_batch(self, port: int, delta: Delta) -> Delta | None:
        """Rows arrived on ``port``; the rows to send downstream now, if any."""

    def on_watermark(self, watermark: int) -> Delta | None:
        """The input watermark (the minimum over the ports) moved forward to
        ``watermark`` (integer microseconds); the rows it releases, if any."""
        return None

    def on_port_watermark(self, port: int, watermark: int) -> Delta | None:
        """The watermark of input ``port`` moved forward to ``watermark``
        (called before `on_watermark`, for operators with several ports
        only); the rows it releases, if any. A join's matches become final
        by one side's watermark, not by the minimum."""
        return None

    def settle(self) -> None:  # noqa: B027 (a stateless step has nothing to tidy)
        """The rows last returned went downstream: free what they came from."""

    def output_watermark(self, watermark: int) -> int:
        """The watermark of this operator's output, given its input's: how far
        its output's event time may trail (a window labelled by its start)."""
        return watermark

    def snapshot(self) -> State:
        """The durable state now (cheap: references to immutable frames)."""
        return State()

    def restore(self, state: State) -> None:  # noqa: B027 (nor anything to restore)
        """Take over ``state`` (from `snapshot`, possibly through Parquet)."""

    def contents(self, state: State) -> pl.DataFrame | None:
        """The rows this operator's output stands for in ``state``, if it holds
        any (an upserting operator's table, a history's rows); None for steps
        that hold no rows."""
        return None

    def frame_port(self, name: str) -> int:
        """The input port whose rows state frame ``name`` holds (keyed by that
        port's keys when the operator is split across workers)."""
        return 0

    @property
    def counters(self) -> dict[str, int]:
        """The operator's own counters for metrics (a join's matches, freed
        and late rows per side); copies split across workers add theirs up."""
        return {}

    @property
    def state_rows(self) -> int:
        """Rows of state held (for metrics)."""
        return 0

    @property
    def pending_rows(self) -> int:
        """Input rows taken but not yet merged into the state (for metrics)."""
        return 0

    @property
    def retained_rows(self) -> int:
        """Rows kept only for ``db.query``, within a retention (for metrics)."""
        return 0
