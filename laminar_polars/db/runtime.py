"""`Runtime`: the running pieces of a database, and their lifecycle.

A runtime owns the catalog and everything built from it: a native ring per
source, the compiled graph of each materialized view, a sink and its feed per
sink, the scheduler that drains the rings through the graph, the lock every
change takes, and the lifecycle (``created`` → ``running`` → ``stopped``, or
``failed``, or ``forked``). Its public methods work at the level of catalog
definitions (a `SourceDef`, a plan, a `SinkDef`, a frame): `LaminarDB` turns
what users write into those and calls them, and so does
`laminar_polars.db.statements` for parsed SQL.

Two guards work without any call. A finalizer stops the engine once the
runtime is collected: it holds the pieces, never the runtime, and the engine
thread holds neither, so a database nobody references is collected. A fork
handler turns a started runtime that ``fork()`` copied into a child into one
whose handles raise `Closed` instead of hanging on an engine thread the child
does not have.

Examples
--------
>>> import polars as pl
>>> from laminar_polars.catalog import SinkDef
>>> from laminar_polars.config import Config
>>> from laminar_polars.db.definitions import source_definition
>>> runtime = Runtime(Config().validate())
>>> runtime.add_source(source_definition("t", {"x": pl.Int64}, None, None, ()))
>>> sub = runtime.add_sink(SinkDef("out", "t")).subscribe()
>>> runtime.source("t").push((1,))
>>> runtime.stop()  # drains what was pushed, though never started
>>> sub.recv(timeout=10)["x"].to_list()
[1]
>>> runtime.state
'stopped'
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from types import MappingProxyType
from typing import Any, Literal

import polars as pl

from laminar_polars import _native
from laminar_polars.catalog import Catalog, SinkDef, SourceDef, ViewDef
from laminar_polars.config import (
    Config,
    Retention,
    WalMode,
    check_ring_memory,
    check_source_durability,
    prepare_data_dir,
)
from laminar_polars.db.definitions import relation_of
from laminar_polars.db.introspection import describe, metrics_of, topology_of
from laminar_polars.db.query import query_snapshot
from laminar_polars.db.wiring import SinkFeed, attach_reader, detach_reader, make_ring
from laminar_polars.durability import Durability, Snapshot
from laminar_polars.engine.graph import Node as GraphNode
from laminar_polars.engine.graph import View, compile_view
from laminar_polars.engine.scheduler import Scheduler
from laminar_polars.engine.sentinels import NO_WATERMARK
from laminar_polars.errors import CatalogError, Closed, EngineError, SchemaError, describe_failure
from laminar_polars.io.sink import Sink
from laminar_polars.io.source import Source, SyncSource
from laminar_polars.plan import Node, Scan, inputs_of

__all__ = ["EngineState", "Runtime"]

EngineState = Literal["created", "running", "stopped", "failed", "forked"]

# Started runtimes, for the fork handler below (weak: it keeps none alive).
_STARTED: weakref.WeakSet[Runtime] = weakref.WeakSet()


class Runtime:
    """The running pieces of one database: rings, view graph, sinks, scheduler.

    Every change takes `lock`; a change is refused with `Closed` once the
    runtime is stopped or forked, and with `EngineError` once the engine has
    failed. Names are checked against the catalog before anything is built,
    so a refused change leaves nothing behind.

    Parameters
    ----------
    config
        The database's settings, already validated (``Config.validate()``);
        a ``data_dir`` is created here.

    Attributes
    ----------
    config
        The settings the runtime was built with.
    catalog
        The definitions of every source, view, sink and table; read it
        freely, change it only through the runtime's methods.
    """

    def __init__(self, config: Config) -> None:
        self.config = config
        prepare_data_dir(config)
        self.catalog = Catalog()
        self._doorbell = _native.Doorbell()
        self._rings: dict[str, _native.Ring] = {}
        self._sinks: dict[str, Sink] = {}
        self._feeds: dict[str, SinkFeed] = {}
        self._views: dict[str, View] = {}
        self._scheduler = Scheduler(self._doorbell, cpu=config.core_affinity)
        # Config.workers > 1: keyed operators split across these threads (the
        # engine thread hands them their parts and waits; see engine.ops.sharded).
        self._pool = (ThreadPoolExecutor(config.workers, thread_name_prefix="laminar-worker")
                      if config.workers > 1 else None)
        # With a data_dir: the write-ahead log, checkpoints, recovery at start().
        self._durability = Durability(config) if config.data_dir is not None else None
        self._recovered = False
        self._lock = threading.RLock()
        self._state: EngineState = "created"  # created → running → stopped
        self._failure_reported = False  # stop() raises the engine's failure once
        self._pid = os.getpid()  # of the process that started the engine
        self._forked_reason: str | None = None  # set in a child made by fork()
        # Stops the engine once this runtime is collected; it holds the
        # pieces, never the runtime (the engine thread does not either).
        self._finalizer = weakref.finalize(
            self, _shut_down, self._scheduler, self._rings, self._sinks, self._durability
        )

    # -- what it holds (read-only) ------------------------------------------------
    @property
    def scheduler(self) -> Scheduler:
        """The scheduler: drains the rings through the graph on the engine
        thread, and runs a function between two micro-batches (``at_barrier``)."""
        return self._scheduler

    @property
    def views(self) -> Mapping[str, View]:
        """Each materialized view's compiled graph, by name (a read-only view
        of the runtime's own mapping)."""
        return MappingProxyType(self._views)

    @property
    def rings(self) -> Mapping[str, _native.Ring]:
        """Each source's native ring, by name (read-only)."""
        return MappingProxyType(self._rings)

    @property
    def sinks(self) -> Mapping[str, Sink]:
        """Each sink, by name (read-only)."""
        return MappingProxyType(self._sinks)

    @property
    def lock(self) -> threading.RLock:
        """The re-entrant lock every change takes. Hold it to make a check and
        the change that depends on it one step, as ``DROP ... IF EXISTS`` does."""
        return self._lock

    @property
    def state(self) -> EngineState:
        """``'created'``, ``'running'``, ``'stopped'``, ``'failed'`` (a view
        failed at run time) or ``'forked'`` (a copy in a ``fork()`` child)."""
        if self._forked_reason is not None:
            return "forked"
        if self._scheduler.error is not None:
            return "failed"
        return self._state

    # -- sources ------------------------------------------------------------------
    def add_source(self, definition: SourceDef) -> None:
        """Create source ``definition``: its ring, drained by the scheduler.

        Raises
        ------
        CatalogError
            Its name is taken by a source, view or table.
        ConfigError
            Its settings are invalid, its ring would not fit in memory, or it
            asks for durability the database has no ``data_dir`` for.
        """
        with self._lock:
            self._check_open()
            self.catalog.check_new_relation(definition.name)
            definition.config.validate()
            rows = definition.config.buffer_size or self.config.buffer_size
            check_ring_memory(f"a ring of {rows} rows of source {definition.name!r}", rows,
                              definition.ring_bytes(rows))
            check_source_durability(definition.name, definition.config, self.config)
            ring = make_ring(definition, self.config.buffer_size, self._doorbell)
            self.catalog.sources[definition.name] = definition
            self._rings[definition.name] = ring
            self._scheduler.add_source(definition.name, ring, definition.polars_schema)
            self._scheduler.use_wait_strategy(
                [d.config.wait_strategy for d in self.catalog.sources.values()]  # type: ignore[misc]
            )

    def drop_source(self, name: str) -> None:
        """Drop source ``name``, which no sink or view may read; its ring is
        closed, so its producer handles raise `Closed`."""
        with self._lock:
            self.catalog.source(name)
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"source {name!r} is still read by {sorted(readers)}")
            self._scheduler.remove_source(name)
            self._rings.pop(name).close()
            del self.catalog.sources[name]

    def source(self, name: str, record_type: type | None = None) -> Source:
        """A new producer handle on source ``name``'s ring (`CatalogError` if
        there is none); ``record_type`` is checked against its schema."""
        definition = self.catalog.source(name)
        durability = self._durability
        if durability is not None and durability.wal_mode(definition) is WalMode.SYNC:
            return SyncSource(self._rings[name], definition, record_type, self._await_durable)
        return Source(self._rings[name], definition, record_type)

    def _await_durable(self, source: str, pushed: int) -> None:
        """A sync source's push: wait until the log has its rows on disk."""
        assert self._durability is not None
        self._durability.wait_durable(source, pushed, self._unlogged)

    def _unlogged(self) -> BaseException | None:
        """Why rows still unlogged will never be (the engine ended), if so."""
        if not self._scheduler.ended:
            return None
        error = self._scheduler.error
        if error is not None:
            return EngineError(f"the engine failed ({describe_failure(error)}) before the rows "
                               "were logged")
        return Closed("the database stopped before the rows were logged")

    # -- materialized views -------------------------------------------------------
    def relation(self, name: str) -> Scan:
        """How a plan sees source or view ``name``: its schema and event-time
        column (`CatalogError` if there is neither)."""
        return relation_of(self.catalog, name)

    def add_view(self, name: str, plan: Node, sql: str | None = None,
                 retention: Retention | None = None) -> None:
        """Compile validated ``plan`` into view ``name`` and attach it to its input.

        ``sql`` is the defining statement (None for a LazyFrame); ``retention``
        how much history an appending view keeps, by default
        ``config.retention``.
        """
        with self._lock:
            self._check_open()
            self.catalog.check_new_relation(name)
            retention = self.config.retention if retention is None else retention
            view = compile_view(name, plan, retention, resolve=self._output_of,
                                workers=self.config.workers, pool=self._pool,
                                tables=self.catalog.table)
            for node in view.nodes:  # a failing reader of one of them fails the engine
                node.on_failure = self._scheduler.fail
            self.catalog.views[name] = ViewDef(name, plan, tuple(inputs_of(plan)), sql,
                                               retention)
            self._views[name] = view
            for input_name, port in view.entries:
                attach_reader(self._views, self._scheduler, input_name, port)

    def _output_of(self, name: str) -> GraphNode | None:
        view = self._views.get(name)
        return None if view is None else view.output

    def drop_view(self, name: str) -> None:
        """Drop materialized view ``name``, which no sink or view may read."""
        with self._lock:
            if name not in self.catalog.views:
                raise CatalogError(self.catalog.unknown_message("materialized view", name,
                                                                self.catalog.views))
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"materialized view {name!r} is still read by {sorted(readers)}")
            view = self._views.pop(name)
            for input_name, port in view.entries:
                detach_reader(self._views, self._scheduler, input_name, port)
            del self.catalog.views[name]

    # -- sinks --------------------------------------------------------------------
    def add_sink(self, definition: SinkDef) -> Sink:
        """Create sink ``definition`` reading its source or view; returns it.

        Raises `CatalogError` if the name is taken or the input unknown.
        """
        with self._lock:
            self._check_open()
            self.catalog.check_new_sink(definition.name)
            if definition.input not in self.catalog.sources | self.catalog.views:
                known = sorted(self.catalog.sources | self.catalog.views) or "none"
                raise CatalogError(f"sink {definition.name!r} reads unknown source or view "
                                   f"{definition.input!r} (known: {known})")
            schema = self.relation(definition.input).schema
            sink = Sink(definition.name, schema, changelog=definition.changelog)
            feed = SinkFeed(sink)
            self.catalog.sinks[definition.name] = definition
            self._sinks[definition.name] = sink
            self._feeds[definition.name] = feed
            attach_reader(self._views, self._scheduler, definition.input, feed)
            return sink

    def sink(self, name: str) -> Sink:
        """Sink ``name``; a source or view name without a sink of its own gets
        an implicit sink of the same name, reading it."""
        with self._lock:
            if name in self._sinks:
                return self._sinks[name]
            if name in self.catalog.sources or name in self.catalog.views:
                return self.add_sink(SinkDef(name, name))
        raise CatalogError(self.catalog.unknown_message("sink", name, self.catalog.sinks))

    def drop_sink(self, name: str) -> None:
        """Drop sink ``name``: it stops reading and its subscriptions end."""
        with self._lock:
            definition = self.catalog.sink(name)
            detach_reader(self._views, self._scheduler, definition.input, self._feeds.pop(name))
            del self.catalog.sinks[name]
            self._sinks.pop(name).close()

    # -- tables -------------------------------------------------------------------
    def register_table(self, name: str, frame: pl.DataFrame, *, replace: bool = False) -> None:
        """Keep ``frame`` (the caller's own copy: it is not copied again) as
        table ``name``; ``replace`` swaps a table of that name, never a source
        or view (`CatalogError`). A table that views join with (lookup joins)
        is replaced only by one with the same columns (`SchemaError`); they
        see it from the next batch on."""
        with self._lock:
            kind = self.catalog.relation_kind(name)
            if kind == "table" and not replace:
                raise CatalogError(f"table {name!r} already exists; replace=True replaces it")
            if kind not in (None, "table"):
                hint = "; replace=True replaces only a table" if replace else ""
                raise CatalogError(f"{kind} {name!r} already exists{hint}")
            readers = self.catalog.readers_of(name)
            if kind == "table" and readers and frame.schema != self.catalog.tables[name].schema:
                raise SchemaError(f"table {name!r} is joined by {sorted(readers)}: a replacement "
                                  f"needs its columns {dict(self.catalog.tables[name].schema)}, "
                                  f"got {dict(frame.schema)}")
            self.catalog.tables[name] = frame

    def drop_table(self, name: str) -> None:
        """Drop registered table ``name``, which no view may read."""
        with self._lock:
            self.catalog.table(name)
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"table {name!r} is still read by {sorted(readers)}")
            del self.catalog.tables[name]

    # -- reading ------------------------------------------------------------------
    def query(self, sql: str) -> pl.DataFrame:
        """Answer ``sql``, one SELECT (not checked here), over the rows views
        and tables hold at one barrier between micro-batches."""
        return query_snapshot(sql, self.catalog.tables, self._views, self._scheduler.at_barrier)

    def describe(self, name: str) -> pl.DataFrame:
        """The columns of a source, view or table (see `LaminarDB.describe`)."""
        with self._lock:
            return describe(self.catalog, name)

    def topology(self) -> dict[str, Any]:
        """Every channel and its derived kind (see `LaminarDB.topology`)."""
        with self._lock:
            return topology_of(self.catalog, self._rings, self._views, self._sinks)

    def metrics(self) -> dict[str, Any]:
        """Counters of every source, view and sink, and the engine's batches
        and `state` (see `LaminarDB.metrics`)."""
        with self._lock:
            engine = {"batches": self._scheduler.batches, "state": self.state}
            out = metrics_of(self._rings, self._views, self._sinks, engine)
            durability = self._durability
            for name, source in out["sources"].items():
                source["checkpointed_rows"] = (0 if durability is None
                                               else durability.checkpointed_rows(name))
            out["durability"] = None if durability is None else durability.metrics()
            return out

    # -- durability -----------------------------------------------------------------
    def checkpoint(self) -> int | None:
        """Take a checkpoint now: the views' states at a barrier, written once
        the log covers them. Its id; None without a data_dir, or when nothing
        changed since the last one."""
        durability = self._durability
        if durability is None:
            return None
        if not self._recovered:
            raise Closed("checkpoint() needs a started database: start() recovers the "
                         "durable state first")
        if self._state == "stopped":
            raise Closed("the database is stopped (stop() took the last checkpoint)")
        return self._take_checkpoint(durability)

    def _take_checkpoint(self, durability: Durability) -> int | None:
        views = dict(self._views)
        scheduler = self._scheduler
        snapshot = scheduler.at_barrier(lambda: Snapshot(
            {name: view.snapshot() for name, view in views.items()}, scheduler.positions()))
        return durability.checkpoint(snapshot, self.catalog.sources, views)

    def _recover(self) -> None:
        """start(): restore the newest checkpoint, replay the log, go on logging."""
        durability = self._durability
        assert durability is not None
        durability.recover(self.catalog.sources, self._views, self._scheduler.feed)
        for name, ring in self._rings.items():
            watermark = durability.watermark(name)
            if watermark is not None and watermark != NO_WATERMARK:
                ring.advance_watermark(watermark)  # late rows stay late across a restart
        for name in durability.closed & self._rings.keys():
            self._rings[name].close(reason="it was closed for good (Source.close) in an "
                                    f"earlier run over {durability.data_dir}")
        self._scheduler.journal = durability.journal
        self._recovered = True
        interval = durability.interval(self.catalog.sources)
        if interval is not None:
            durability.start_interval(interval, self.checkpoint)

    def _seal_and_checkpoint(self) -> None:
        """stop() with durability: refuse pushes, let the engine take what the
        rings hold, then checkpoint that state, before the input ends (the
        closing of open windows at the end of this run is not durable state)."""
        for ring in self._rings.values():
            ring.seal()
        thread = self._scheduler.thread
        while any(ring.pending for ring in self._rings.values()) and thread is not None \
                and thread.is_alive() and self._scheduler.error is None:
            time.sleep(0.001)
        if self._scheduler.error is None and self._durability is not None:
            self._take_checkpoint(self._durability)

    # -- lifecycle ----------------------------------------------------------------
    def start(self) -> None:
        """Start the engine thread (`Closed` once stopped or forked)."""
        with self._lock:
            self._check_open()
            if self._durability is not None and not self._recovered:
                self._recover()
            self._state = "running"
            self._pid = os.getpid()
            _STARTED.add(self)
            self._scheduler.start()

    def stop(self) -> None:
        """Drain, close every ring, stop the engine, end every sink; idempotent,
        and a no-op in a ``fork()`` child. Raises the engine's failure as
        `EngineError` once (see `LaminarDB.stop`)."""
        with self._lock:
            if self._forked_reason is not None:
                return  # the parent's engine owns these rows: never drain them here
            self._state = "stopped"
            _STARTED.discard(self)
            if self._durability is not None and self._recovered:
                self._durability.stop_interval()
                try:
                    self._seal_and_checkpoint()
                finally:
                    self._durability.flush()
            if self._durability is not None:
                self._durability.ending = True  # not a Source.close(): the state stays open
            for ring in self._rings.values():
                ring.close()
            self._scheduler.stop()
            if self._durability is not None:
                self._durability.close()
            if self._pool is not None and self._scheduler.ended:  # nothing runs the graph now
                self._pool.shutdown(wait=False)
            error = self._scheduler.error
            for sink in self._sinks.values():
                sink.close(error=error)  # each was ended by the engine; the first close stays
            if error is None or self._failure_reported:
                return
            self._failure_reported = True
        raise EngineError(f"the engine failed ({describe_failure(error)})") from error

    def _check_open(self) -> None:
        if self._forked_reason is not None:
            raise Closed(self._forked_reason)
        error = self._scheduler.error
        if error is not None:
            raise EngineError(f"the engine failed ({describe_failure(error)}); "
                              "open a new database") from error
        if self._state == "stopped":
            raise Closed("the database is stopped")

    def _after_fork_in_child(self) -> None:
        """This is a copy made by ``fork()`` in the child, where the engine
        thread does not exist: make every handle fail clearly, never hang."""
        self._forked_reason = (f"this database was started in process {self._pid} before "
                               "fork(); open a new database in the child process")
        # Another thread of the parent may have held these locks at the fork.
        self._lock = threading.RLock()
        self._scheduler.after_fork_in_child(self._forked_reason)
        for sink in self._sinks.values():
            sink.reset_after_fork(self._forked_reason)


def _shut_down(
    scheduler: Scheduler, rings: dict[str, _native.Ring], sinks: dict[str, Sink],
    durability: Durability | None,
) -> None:
    """A runtime was collected (or the interpreter exits): stop its engine.

    Runs on whatever thread the collector ran, the engine's own included, so
    it never waits: the engine thread drains what the closed rings hold, ends
    every sink and exits by itself. In a forked child it does nothing.
    """
    if scheduler.forked:
        return
    if durability is not None:
        durability.ending = True  # as at stop(): the sources were not closed for good
    for ring in list(rings.values()):
        if not ring.closed:  # a stopped database's rings keep their reason
            ring.close(reason="its database is no longer referenced (collected), or the "
                              "interpreter is exiting")
    if scheduler.thread is None:  # never started: nothing will end the sinks
        for sink in list(sinks.values()):
            sink.close()
    scheduler.shutdown()


def _after_fork_in_child() -> None:
    for runtime in list(_STARTED):
        runtime._after_fork_in_child()
    _STARTED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)
