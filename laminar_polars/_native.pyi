"""Typed stub of the compiled ring core, ``native/_native.pyx``.

Argument names and defaults follow the .pyx; tests/unit/test_native_stub.py
checks them, and every name here, against the built module.
"""

from collections.abc import Iterable, Sequence
from typing import Any, Final

import numpy as np
import numpy.typing as npt
from typing_extensions import CapsuleType

# Type codes index this (laminar_polars.catalog.ColumnType uses the same values).
TYPE_NAMES: Final = (
    "VARCHAR", "DOUBLE", "REAL", "BIGINT", "INTEGER", "SMALLINT", "BOOLEAN", "TIMESTAMP", "DATE"
)
NO_WATERMARK: Final = -9223372036854775808  # INT64_MIN: no event seen yet
CLOSED_WATERMARK: Final = 9223372036854775807  # INT64_MAX: the input has ended
MIN_TIMESTAMP_US: Final = -62135596800000000  # 0001-01-01 00:00:00
MAX_TIMESTAMP_US: Final = 253402300799999999  # 9999-12-31 23:59:59.999999
MIN_DATE_DAYS: Final = -719162  # 0001-01-01
MAX_DATE_DAYS: Final = 2932896  # 9999-12-31
TIMESTAMP_RANGE: Final = "0001-01-01 00:00:00 to 9999-12-31 23:59:59.999999"

def set_errors(
    schema_error: type[Exception], full: type[Exception], closed: type[Exception]
) -> None:
    """Install the exception classes raised for bad rows, a full ring, a closed one."""

def datetime64_micros(value: np.datetime64) -> int:
    """A numpy datetime64 as int microseconds, floored."""

def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC-32C of ``data`` (continuing from ``crc``), GIL released."""

class Doorbell:
    """Wakes the engine when any ring of the database has rows or news."""

    @property
    def rung(self) -> int:
        """How many times the bell has rung (pass it to `wait` as ``seen``)."""
    def ring(self) -> None:
        """Wake a thread waiting in `wait`."""
    def wait(
        self,
        rings: list[Ring],
        seen: int,
        timeout: float | None = None,
        kind: str = "park",
        spins: int = 0,
    ) -> bool:
        """Block (GIL released) until a ring has rows or news; False on timeout."""

class ArrowChunk:
    """Rows taken from a ring: one Arrow struct array, exported once."""

    @property
    def first_sequence(self) -> int:
        """The ring sequence of the chunk's first row."""
    def __len__(self) -> int: ...
    def __arrow_c_array__(
        self, requested_schema: object | None = None
    ) -> tuple[CapsuleType, CapsuleType]:
        """The ``(arrow_schema, arrow_array)`` capsules; a second call raises ValueError."""

class QueuedBatch:
    """A batch pushed whole, queued after every row pushed before it."""

    @property
    def data(self) -> object:
        """A pyarrow Table (``push_arrow``) or an `ArrowChunk` (``push_batch``)."""
    @property
    def keep(self) -> bytearray | None:
        """One byte per row, 1 = on time when admitted; None when all were."""
    @property
    def rows(self) -> int:
        """Rows kept: the room the batch takes."""
    @property
    def tag(self) -> int:
        """The batch comes before the ring row with this sequence."""

class Ring:
    """A source's ring: pre-allocated columns and the queue of whole batches."""

    def __init__(
        self,
        names: Sequence[str],
        types: Sequence[int],
        not_null: Sequence[bool],
        capacity: int,
        watermark_column: int = -1,
        watermark_delay_us: int = 0,
        backpressure: str = "block",
        wait_kind: str = "spin_yield",
        spins: int = 100,
        doorbell: Doorbell | None = None,
        arena_bytes: int = 0,
    ) -> None:
        """``capacity`` rows (a power of two >= 2) of columns ``names``."""
    @property
    def names(self) -> tuple[str, ...]: ...
    @property
    def doorbell(self) -> Doorbell | None: ...
    @property
    def producers(self) -> int:
        """Producer handles registered (`add_producer`)."""
    @property
    def close_reason(self) -> str | None:
        """Why the ring was first closed, if a reason was given."""
    @property
    def close_cause(self) -> BaseException | None:
        """The exception behind the close (an engine failure), if any."""
    @property
    def capacity(self) -> int: ...
    @property
    def pending(self) -> int:
        """Rows pushed (ring rows and queued batches) and not yet taken."""
    @property
    def multi_producer(self) -> bool: ...
    @property
    def closed(self) -> bool:
        """Whether pushes are refused (sealed or ended)."""
    @property
    def ended(self) -> bool:
        """Whether the input ended (the watermark is +inf)."""
    @property
    def watermark(self) -> int:
        """Current watermark in microseconds (NO_WATERMARK before any event)."""
    @property
    def pushed(self) -> int:
        """Rows accepted so far (ring rows and batch rows), in push order."""
    @property
    def consumed(self) -> int:
        """Rows taken by the engine or dropped, in push order."""
    def stats(self) -> dict[str, int]:
        """Counters: pushed, dropped, late, rejected, pending."""
    def add_producer(self) -> None:
        """Register one more producer handle; the second one turns on MPSC."""
    def advance_watermark(self, event_time: int) -> None:
        """Move the watermark to ``event_time`` (never back)."""
    def count_rejected(self, rows: int) -> None:
        """Count ``rows`` as rejected."""
    def close(self, reason: str | None = None, cause: BaseException | None = None) -> None:
        """End the input; pushes then raise `Closed` saying ``reason``."""
    def seal(self, reason: str | None = None) -> None:
        """Refuse further pushes but keep the watermark."""
    def close_in_forked_child(self, reason: str) -> None:
        """`close` in the child of a ``fork()``: wakes no thread."""
    def closed_error(self, what: str = "the source is closed") -> Exception:
        """The `Closed` exception a push into this closed ring raises."""
    def enqueue_batch(
        self,
        data: object,
        rows: int,
        event_times: npt.NDArray[np.int64] | None = None,
        wait: bool = True,
    ) -> bool:
        """Queue ``data`` whole after every row pushed so far; False if refused."""
    def take(
        self, max_rows: int = 4611686018427387904
    ) -> tuple[int, list[ArrowChunk | QueuedBatch], int]:
        """Everything readable now: ``(watermark, segments, consumed)``."""
    def schema_capsule(self) -> CapsuleType:
        """The ring's struct schema as an ``arrow_schema`` capsule."""

class Producer:
    """A producer handle of a ring: the hot path of ``Source.push``."""

    def __init__(self, ring: Ring, *args: Any, **kwargs: Any) -> None:
        """Register a producer on ``ring``; further arguments are a subclass's."""
    @property
    def ring(self) -> Ring: ...
    def push(self, row: object) -> None:
        """Append one row; waits, drops or raises `Full` when the ring is full."""
    def try_push(self, row: object) -> bool:
        """Append one row if there is room now; never blocks."""
    def stage_rows(
        self, rows: Iterable[object]
    ) -> tuple[ArrowChunk, npt.NDArray[np.int64] | None] | None:
        """Rows as one checked Arrow batch and their event times; None for no rows."""
