"""Configuration: `Config`, `SourceConfig`, `Watermark`, the enums, durations.

Strings are accepted wherever an enum is (``"drop_oldest"``, ``"spin_yield(10)"``),
and durations as :class:`datetime.timedelta`, seconds, or text such as ``"10s"``,
``"100ms"``, ``"10 seconds"`` or ``"1 minute"``.

Examples
--------
>>> import laminar_polars as lp
>>> lp.Config(buffer_size=1024).buffer_size
1024
>>> lp.parse_duration("100ms")
datetime.timedelta(microseconds=100000)
>>> lp.WaitStrategy.parse("spin_yield(10)")
WaitStrategy.spin_yield(10)
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import os
import re
from pathlib import Path
from typing import ClassVar, TypeVar

from laminar_polars.errors import ConfigError

__all__ = [
    "Backpressure",
    "Config",
    "Duration",
    "SourceConfig",
    "UNBOUNDED",
    "Retention",
    "RetentionSetting",
    "WaitStrategy",
    "WalMode",
    "Watermark",
    "check_ring_memory",
    "check_source_durability",
    "parse_duration",
    "parse_retention",
    "physical_memory",
    "prepare_data_dir",
]

Duration = dt.timedelta | int | float | str

_UNIT_SECONDS = {
    "us": 1e-6, "microsecond": 1e-6, "microseconds": 1e-6,
    "ms": 1e-3, "millisecond": 1e-3, "milliseconds": 1e-3,
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
}
_DURATION_TEXT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


def parse_duration(value: Duration, *, what: str = "duration") -> dt.timedelta:
    """Return ``value`` as a :class:`datetime.timedelta`.

    Raises :class:`ConfigError` when the value is negative or not understood.

    >>> parse_duration("10 seconds")
    datetime.timedelta(seconds=10)
    >>> parse_duration(1.5)
    datetime.timedelta(seconds=1, microseconds=500000)
    """
    if isinstance(value, dt.timedelta):
        delta = value
    elif isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration, got {value!r}")
    elif isinstance(value, (int, float)):
        delta = dt.timedelta(seconds=value)
    elif isinstance(value, str):
        match = _DURATION_TEXT.match(value)
        unit = _UNIT_SECONDS.get(match.group(2).lower()) if match else None
        if match is None or unit is None:
            raise ConfigError(
                f"{what}: cannot read {value!r} as a duration; expected e.g. "
                "'100ms', '10s', '10 seconds' or '1 minute'"
            )
        delta = dt.timedelta(seconds=float(match.group(1)) * unit)
    else:
        raise ConfigError(f"{what}: expected a timedelta, seconds or text, got {value!r}")
    if delta < dt.timedelta(0):
        raise ConfigError(f"{what}: must not be negative, got {value!r}")
    return delta


_Enum = TypeVar("_Enum", bound=enum.Enum)


def _parse_enum(cls: type[_Enum], value: object, what: str) -> _Enum:
    if isinstance(value, cls):
        return value
    if isinstance(value, str):
        try:
            return cls(value.strip().lower())
        except ValueError:
            pass
    expected = ", ".join(repr(m.value) for m in cls)
    raise ConfigError(f"{what}: unknown value {value!r}; expected one of {expected}")


class Backpressure(str, enum.Enum):
    """What a push does when the source's ring is full."""

    BLOCK = "block"
    DROP_OLDEST = "drop_oldest"
    REJECT = "reject"

    @classmethod
    def parse(cls, value: object) -> Backpressure:
        return _parse_enum(cls, value, "backpressure")


class WalMode(str, enum.Enum):
    """How the write-ahead log acknowledges a push."""

    ASYNC = "async"
    SYNC = "sync"

    @classmethod
    def parse(cls, value: object) -> WalMode:
        return _parse_enum(cls, value, "wal_mode")


@dataclasses.dataclass(frozen=True)
class WaitStrategy:
    """How a waiting thread waits: ``SPIN``, ``spin_yield(n)`` or ``PARK``.

    ``spin`` burns a core for the lowest latency; ``spin_yield(n)`` spins ``n``
    times, then yields the CPU between checks; ``park`` sleeps on a condition
    variable (no CPU, the GIL released) until woken.
    """

    kind: str
    spins: int = 0

    SPIN: ClassVar[WaitStrategy]
    PARK: ClassVar[WaitStrategy]

    @staticmethod
    def spin_yield(spins: int = 100) -> WaitStrategy:
        if not isinstance(spins, int) or isinstance(spins, bool) or spins < 0:
            raise ConfigError(f"wait_strategy: spin_yield(n) needs an int n >= 0, got {spins!r}")
        return WaitStrategy("spin_yield", spins)

    @classmethod
    def parse(cls, value: object) -> WaitStrategy:
        if isinstance(value, WaitStrategy):
            return value
        if isinstance(value, str):
            text = value.strip().lower()
            if text in ("spin", "park"):
                return WaitStrategy(text)
            if text == "spin_yield":
                return cls.spin_yield()
            match = re.fullmatch(r"spin_yield\(\s*(\d+)\s*\)", text)
            if match:
                return cls.spin_yield(int(match.group(1)))
        raise ConfigError(
            f"wait_strategy: unknown value {value!r}; expected 'spin', 'spin_yield', "
            "'spin_yield(n)' or 'park'"
        )

    def __repr__(self) -> str:
        if self.kind == "spin_yield":
            return f"WaitStrategy.spin_yield({self.spins})"
        return f"WaitStrategy.{self.kind.upper()}"


WaitStrategy.SPIN = WaitStrategy("spin")
WaitStrategy.PARK = WaitStrategy("park")


@dataclasses.dataclass(frozen=True)
class Watermark:
    """Event-time column and the delay the watermark trails its maximum by.

    >>> Watermark("ts", "50ms").delay
    datetime.timedelta(microseconds=50000)
    """

    column: str
    delay: Duration = dt.timedelta(0)

    def __post_init__(self) -> None:
        if not isinstance(self.column, str) or not self.column:
            raise ConfigError(f"watermark: column must be a name, got {self.column!r}")
        object.__setattr__(self, "delay", parse_duration(self.delay, what="watermark delay"))

    @property
    def delay_us(self) -> int:
        delay = self.delay
        assert isinstance(delay, dt.timedelta)  # __post_init__ made it one
        return _to_micros(delay)


def _to_micros(delta: dt.timedelta) -> int:
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@dataclasses.dataclass(frozen=True)
class Retention:
    """How much of its history an appending view keeps for ``db.query``: the
    newest ``rows`` rows, or the rows within ``time_us`` microseconds of event
    time behind the view's watermark; neither set keeps everything.

    >>> parse_retention(100_000), parse_retention("1 hour").time_us
    (Retention(rows=100000, time_us=None), 3600000000)
    """

    rows: int | None = None
    time_us: int | None = None

    def describe(self) -> str:
        if self.rows is not None:
            return f"{self.rows} rows"
        if self.time_us is not None:
            return f"{self.time_us} us of event time"
        return "unbounded"


UNBOUNDED = Retention()

RetentionSetting = int | dt.timedelta | str | None


def parse_retention(value: object, *, what: str = "retention") -> Retention:
    """A retention setting as a `Retention`: an int is rows (at least 1), a
    duration (``timedelta`` or text such as ``'1 hour'``) event time, None
    everything. Raises `ConfigError` otherwise."""
    if value is None:
        return UNBOUNDED
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(f"{what}: a number of rows must be at least 1, got {value}")
        return Retention(rows=value)
    if isinstance(value, (dt.timedelta, str)):
        delta = parse_duration(value, what=what)
        if delta <= dt.timedelta(0):
            raise ConfigError(f"{what}: an event-time span must be positive, got {value!r}")
        return Retention(time_us=_to_micros(delta))
    raise ConfigError(
        f"{what}: expected a number of rows (int), a duration (timedelta or text such as "
        f"'1 hour') or None for everything, got {value!r}"
    )


MAX_BUFFER_SIZE = 1 << 31
# The least a ring slot takes (8 bytes of bookkeeping, one BOOLEAN and its validity
# byte); `catalog.SourceDef.ring_bytes` counts a real schema.
MIN_SLOT_BYTES = 10


def parse_state_ttl(value: object, *, what: str = "state_ttl") -> int | None:
    """A join's state TTL in microseconds of event time (None: no TTL): a
    positive duration, as ``timedelta``, seconds or text such as ``'1 hour'``.

    >>> parse_state_ttl("10 minutes"), parse_state_ttl(None)
    (600000000, None)
    """
    if value is None:
        return None
    if not isinstance(value, (dt.timedelta, str, int, float)) or isinstance(value, bool):
        raise ConfigError(f"{what}: expected a duration (timedelta, seconds or text such as "
                          f"'1 hour'), got {type(value).__name__}")
    delta = parse_duration(value, what=what)
    if delta <= dt.timedelta(0):
        raise ConfigError(f"{what}: must be positive, got {value!r}")
    return _to_micros(delta)


def _check_buffer_size(value: object, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"{what}: expected an int power of two, got {value!r}")
    if value < 2 or value & (value - 1):
        raise ConfigError(f"{what}: must be a power of two >= 2, got {value}")
    if value > MAX_BUFFER_SIZE:
        raise ConfigError(f"{what}: at most 2**31 ({MAX_BUFFER_SIZE}) rows, got {value}")
    return value


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where the platform does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def _bytes_text(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    size = float(count)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        size /= 1024
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")


def check_ring_memory(what: str, rows: int, nbytes: int, *, at_least: str = "") -> None:
    """Refuse a ring of ``rows`` taking ``nbytes`` when that is over half the
    machine's memory: the native ring touches every slot up front, so it would
    not fail cleanly but get the process killed. ``at_least`` says why
    ``nbytes`` is only a lower bound."""
    memory = physical_memory()
    if memory is None or nbytes <= memory // 2:
        return
    size = f"at least {_bytes_text(nbytes)} ({at_least})" if at_least else _bytes_text(nbytes)
    raise ConfigError(
        f"{what} would take {size}; this machine has {_bytes_text(memory)} of memory "
        "and a ring may take at most half; use a smaller buffer_size"
    )


def _optional_duration(value: Duration | None, what: str) -> dt.timedelta | None:
    return None if value is None else parse_duration(value, what=what)


@dataclasses.dataclass
class SourceConfig:
    """Per-source settings; ``None``/0 fields fall back to the database's `Config`.

    >>> SourceConfig(buffer_size=1024, backpressure="reject").validate().backpressure
    <Backpressure.REJECT: 'reject'>
    """

    buffer_size: int = 0
    backpressure: Backpressure | str = Backpressure.BLOCK
    wait_strategy: WaitStrategy | str = dataclasses.field(
        default_factory=lambda: WaitStrategy.spin_yield(100)
    )
    checkpoint_interval: Duration | None = None
    wal_mode: WalMode | str | None = None
    watermark: Watermark | None = None

    def validate(self) -> SourceConfig:
        """Normalise every field in place (strings → enums) and return self."""
        if self.buffer_size != 0:
            _check_buffer_size(self.buffer_size, "buffer_size")
        self.backpressure = Backpressure.parse(self.backpressure)
        self.wait_strategy = WaitStrategy.parse(self.wait_strategy)
        self.checkpoint_interval = _optional_duration(
            self.checkpoint_interval, "checkpoint_interval"
        )
        self.wal_mode = None if self.wal_mode is None else WalMode.parse(self.wal_mode)
        if self.watermark is not None and not isinstance(self.watermark, Watermark):
            raise ConfigError(f"watermark: expected lp.Watermark, got {self.watermark!r}")
        return self


@dataclasses.dataclass
class Config:
    """Database-wide settings (SPEC §2). `validate()` runs in :func:`open`.

    Every setting takes effect or is refused: ``buffer_size`` is a power of two
    up to 2**31, and a source whose ring would take over half the machine's
    memory is refused; ``core_affinity`` pins the engine thread to that CPU
    (Linux); ``workers`` splits keyed operators across that many threads;
    ``data_dir`` is created when the database opens and holds its durable
    state (docs/durability.md): checkpoints every ``checkpoint_interval`` (the
    newest ``keep_checkpoints`` kept) and, with ``wal_mode``, a write-ahead log.

    >>> Config(workers=0).validate()
    Traceback (most recent call last):
    ...
    laminar_polars.errors.ConfigError: workers: expected an int >= 1, got 0
    >>> Config(buffer_size=1000).validate()
    Traceback (most recent call last):
    ...
    laminar_polars.errors.ConfigError: buffer_size: must be a power of two >= 2, got 1000
    """

    data_dir: str | Path | None = None
    buffer_size: int = 65536
    checkpoint_interval: Duration | None = None
    wal_mode: WalMode | str | None = None
    core_affinity: int | None = None
    workers: int = 1
    view_retention: RetentionSetting = 1_000_000
    keep_checkpoints: int = 2

    @property
    def retention(self) -> Retention:
        """``view_retention`` as a `Retention`: what an appending view keeps
        unless it says otherwise (``WITH (retention = ...)``)."""
        return parse_retention(self.view_retention, what="view_retention")

    def validate(self) -> Config:
        """Check and normalise the settings; raise `ConfigError` on the first problem."""
        parse_retention(self.view_retention, what="view_retention")
        _check_buffer_size(self.buffer_size, "buffer_size")
        check_ring_memory(f"buffer_size: a ring of {self.buffer_size} rows",
                          self.buffer_size, self.buffer_size * MIN_SLOT_BYTES,
                          at_least=f"{MIN_SLOT_BYTES} bytes a row, for a single BOOLEAN column")
        self.checkpoint_interval = _optional_duration(
            self.checkpoint_interval, "checkpoint_interval"
        )
        self.wal_mode = None if self.wal_mode is None else WalMode.parse(self.wal_mode)
        if (self.checkpoint_interval is not None or self.wal_mode is not None) and (
            self.data_dir is None
        ):
            raise ConfigError("data_dir is required when checkpoint_interval or wal_mode is set")
        if self.wal_mode is not None and self.checkpoint_interval is None:
            raise ConfigError("wal_mode requires checkpoint_interval")
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise ConfigError(f"workers: expected an int >= 1, got {self.workers!r}")
        if not isinstance(self.keep_checkpoints, int) or isinstance(self.keep_checkpoints, bool) \
                or self.keep_checkpoints < 1:
            raise ConfigError(f"keep_checkpoints: expected an int >= 1, "
                              f"got {self.keep_checkpoints!r}")
        if self.core_affinity is not None:
            _check_core_affinity(self.core_affinity)
        if self.data_dir is not None:
            self.data_dir = Path(self.data_dir)
        return self


def _check_core_affinity(cpu: object) -> None:
    """The engine thread pins itself to ``cpu`` (`os.sched_setaffinity`): the
    platform must be able to, and the CPU must be one this process may run on."""
    if not isinstance(cpu, int) or isinstance(cpu, bool) or cpu < 0:
        raise ConfigError(f"core_affinity: expected a CPU index >= 0, got {cpu!r}")
    if not hasattr(os, "sched_setaffinity") or not hasattr(os, "sched_getaffinity"):
        raise ConfigError(
            "core_affinity is not supported on this platform (it needs os.sched_setaffinity, "
            "which Linux has); leave it None"
        )
    available = sorted(os.sched_getaffinity(0))
    if cpu not in available:
        raise ConfigError(
            f"core_affinity: CPU {cpu} is not available to this process; "
            f"available CPUs: {', '.join(map(str, available))}"
        )


def prepare_data_dir(config: Config) -> None:
    """Create ``config.data_dir`` (parents too) for a database being opened.

    Raises `ConfigError` naming the path when it cannot be created (e.g. it is,
    or lies under, a regular file).
    """
    if config.data_dir is None:
        return
    path = Path(config.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise ConfigError(f"data_dir {str(path)!r} exists and is not a directory") from None
    except OSError as error:
        raise ConfigError(
            f"data_dir {str(path)!r} cannot be created: {error.strerror or error}"
        ) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"data_dir {str(path)!r} is not writable")


def check_source_durability(source: str, settings: SourceConfig, config: Config) -> None:
    """A source's own ``checkpoint_interval`` / ``wal_mode`` need the database's
    ``data_dir`` (`ConfigError` without one)."""
    options = [name for name in ("checkpoint_interval", "wal_mode")
               if getattr(settings, name) is not None]
    if not options:
        return
    if config.data_dir is None:
        raise ConfigError(
            f"source {source!r}: {' and '.join(options)} needs the database's data_dir "
            "(durable state is kept there); open it with lp.Config(data_dir=...)"
        )
