"""`LaminarDB`: the catalog and the lifecycle; the work is done by the layers below.

Alongside it in `laminar_polars.db`: `definitions` translates catalog
definitions, `wiring` builds and connects the running pieces, `statements`
runs parsed SQL, `query` answers ``db.query``, and `introspection` builds what
the database reports about itself.

Examples
--------
>>> import laminar_polars as lp
>>> with lp.open() as db:
...     db.execute('''
...         CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, ts TIMESTAMP NOT NULL,
...                               WATERMARK FOR ts AS ts - INTERVAL '100' MILLISECOND);
...         CREATE SINK raw FROM trades''')
...     sub = db.sink("raw").subscribe()
...     db.start()
...     db.source("trades").push(("AAPL", 150.0, 1_000_000))
...     sub.recv(timeout=10)
shape: (1, 3)
┌────────┬───────┬─────────────────────┐
│ symbol ┆ price ┆ ts                  │
│ ---    ┆ ---   ┆ ---                 │
│ str    ┆ f64   ┆ datetime[μs]        │
╞════════╪═══════╪═════════════════════╡
│ AAPL   ┆ 150.0 ┆ 1970-01-01 00:00:01 │
└────────┴───────┴─────────────────────┘
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping
from typing import Any, Literal

import polars as pl

from laminar_polars import _native
from laminar_polars.catalog import Catalog, SinkDef, SourceDef, ViewDef
from laminar_polars.config import (
    Config,
    Retention,
    RetentionSetting,
    SourceConfig,
    Watermark,
    check_ring_memory,
    check_source_durability,
    parse_retention,
    prepare_data_dir,
)
from laminar_polars.db.definitions import relation_of, source_definition, table_frame
from laminar_polars.db.introspection import describe, metrics_of, topology_of
from laminar_polars.db.query import query_snapshot
from laminar_polars.db.statements import run_statement
from laminar_polars.db.wiring import SinkFeed, attach_reader, detach_reader, make_ring
from laminar_polars.engine.graph import Node as GraphNode
from laminar_polars.engine.graph import View, compile_view
from laminar_polars.engine.scheduler import Scheduler
from laminar_polars.errors import CatalogError, Closed, EngineError, SqlError, describe_failure
from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.io.sink import Sink
from laminar_polars.io.source import Source
from laminar_polars.plan import Node, Scan, inputs_of, validate
from laminar_polars.sql import Query, parse_statements

__all__ = ["LaminarDB", "open"]

# Started databases, for the fork handler below (weak: it keeps none alive).
_STARTED: weakref.WeakSet[LaminarDB] = weakref.WeakSet()


class LaminarDB:
    """An embedded streaming database: sources in, sinks out.

    Create one with :func:`laminar_polars.open`. Define sources and sinks with
    :meth:`execute` (SQL) or :meth:`create_source` / :meth:`create_sink`, then
    :meth:`start`; :meth:`stop` (or leaving a ``with`` block) drains what was
    pushed, ends every source's input, and ends every subscription.

    Its state (``metrics()["engine"]["state"]``, ``repr``) is ``'created'``,
    ``'running'``, ``'stopped'``, ``'failed'`` (a view failed at run time: see
    :meth:`stop`) or ``'forked'`` (this is a copy made by ``fork()`` after
    :meth:`start`: its handles raise `Closed`; open a new database in the
    child). A database nobody references any more stops its engine thread.
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = (config or Config()).validate()
        prepare_data_dir(self.config)
        self.catalog = Catalog()
        self._doorbell = _native.Doorbell()
        self._rings: dict[str, _native.Ring] = {}
        self._sinks: dict[str, Sink] = {}
        self._feeds: dict[str, SinkFeed] = {}
        self._views: dict[str, View] = {}
        self._scheduler = Scheduler(self._doorbell, cpu=self.config.core_affinity)
        self._lock = threading.RLock()
        self._state = "created"  # created → running → stopped
        self._failure_reported = False  # stop() raises the engine's failure once
        self._pid = os.getpid()  # of the process that started the engine
        self._forked_reason: str | None = None  # set in a child made by fork()
        # Stops the engine once this database is collected; it holds the
        # pieces, never the database (the engine thread does not either).
        self._finalizer = weakref.finalize(
            self, _shut_down, self._scheduler, self._rings, self._sinks
        )

    # -- the seed's spellings ---------------------------------------------------
    @classmethod
    def open(cls, config: Config | None = None) -> LaminarDB:
        return cls(config)

    @classmethod
    def open_with_config(cls, config: Config) -> LaminarDB:
        return cls(config)

    # -- SQL ------------------------------------------------------------------
    def execute(self, sql: str) -> pl.DataFrame | None:
        """Run one or more ``;``-separated statements; returns the last result
        (a frame for SHOW / DESCRIBE / EXPLAIN, else None)."""
        result = None
        for statement in parse_statements(sql):
            result = run_statement(self, statement)
        return result

    # -- materialized views -----------------------------------------------------
    def _relation(self, name: str) -> Scan:
        """How a plan sees a source or view: its schema and event-time column."""
        return relation_of(self.catalog, name)

    def stream(self, name: str) -> pl.LazyFrame:
        """A LazyFrame standing for source or view ``name``, to build a view on
        with :meth:`create_materialized_view`."""
        return stream(self._relation(name))

    def create_materialized_view(
        self, name: str, query: pl.LazyFrame, emit: str | None = None, *,
        retention: RetentionSetting | Literal["default"] = "default",
    ) -> None:
        """Maintain ``query`` (built on :meth:`stream` frames) as view ``name``.

        ``emit`` is ``'on_window_close'`` (the default for windows) or
        ``'on_update'``. A plan the engine cannot maintain raises `PlanError`.
        ``retention`` is how much of its history an appending view keeps for
        :meth:`query`: a number of rows, an event-time span behind its
        watermark (``timedelta`` or text such as ``'1 hour'``), or None for
        everything; by default ``Config.view_retention``. A continuous
        aggregate holds one row per key and is never trimmed.

        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.create_materialized_view("last3", db.stream("t"), retention=3)
        >>> src = db.source("t")
        >>> src.push_batch([(i,) for i in range(10)])
        >>> db.stop()
        >>> db.query("SELECT x FROM last3")["x"].to_list()
        [7, 8, 9]
        """
        if isinstance(query, Node):  # a hand-built plan: checked as the front ends' are
            plan = validate(query)
        else:
            plan = plan_lazyframe(query, self._relation, emit)
        policy = None if retention == "default" else parse_retention(retention)
        self._add_view(name, plan, None, policy)

    def _add_view(self, name: str, plan: Node, sql: str | None,
                  retention: Retention | None = None) -> None:
        with self._lock:
            self._check_open()
            self.catalog.check_new_relation(name)
            retention = self.config.retention if retention is None else retention
            view = compile_view(name, plan, retention, resolve=self._output_of)
            for node in view.nodes:  # a failing reader of one of them fails the engine
                node.on_failure = self._scheduler.fail
            self.catalog.views[name] = ViewDef(name, plan, tuple(inputs_of(plan)), sql,
                                               retention)
            self._views[name] = view
            attach_reader(self._views, self._scheduler, view.input, view.first.port(0))

    def _output_of(self, name: str) -> GraphNode | None:
        view = self._views.get(name)
        return None if view is None else view.output

    def drop_materialized_view(self, name: str) -> None:
        """Drop a view no sink or other view reads."""
        with self._lock:
            if name not in self.catalog.views:
                raise CatalogError(self.catalog.unknown_message("materialized view", name,
                                                                self.catalog.views))
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"materialized view {name!r} is still read by {sorted(readers)}")
            view = self._views.pop(name)
            detach_reader(self._views, self._scheduler, view.input, view.first.port(0))
            del self.catalog.views[name]

    def register_table(self, name: str, frame: Any, replace: bool = False) -> None:
        """Register a static table that ``db.query`` can read (and, later, lookup joins).

        Parameters
        ----------
        name
            The table's name; sources, views and tables share one namespace.
        frame
            A `polars.DataFrame`, or anything with ``__arrow_c_stream__`` (a
            pyarrow Table, a pandas DataFrame, ...). It is converted to a
            DataFrame of the table's own now, so changing ``frame`` later
            changes nothing.
        replace
            Swap the table already registered as ``name`` for this one (a new
            name is simply registered). A source or view is never replaced.

        Raises
        ------
        SchemaError
            ``frame`` is neither a DataFrame nor an Arrow stream (e.g. a dict).
        CatalogError
            ``name`` is taken: by a source or view, or by a table without
            ``replace=True``.

        Examples
        --------
        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.1]}))
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.2]}), replace=True)
        >>> db.query("SELECT rate FROM fx")["rate"].to_list()
        [1.2]
        >>> db.execute("SHOW TABLES")["name"].to_list()
        ['fx']
        >>> db.register_table("fx", {"ccy": ["EUR"]})
        Traceback (most recent call last):
        ...
        laminar_polars.errors.SchemaError: table 'fx': expected a polars.DataFrame or ..., got dict
        """
        table = table_frame(name, frame)
        with self._lock:
            kind = self.catalog.relation_kind(name)
            if kind == "table" and not replace:
                raise CatalogError(f"table {name!r} already exists; replace=True replaces it")
            if kind not in (None, "table"):
                hint = "; replace=True replaces only a table" if replace else ""
                raise CatalogError(f"{kind} {name!r} already exists{hint}")
            self.catalog.tables[name] = table

    def drop_table(self, name: str) -> None:
        """Drop registered table ``name`` (SQL: ``DROP TABLE [IF EXISTS] name``).

        Raises `CatalogError` if there is no such table; a source or view of
        that name is left alone (the error says which DROP drops it).

        Examples
        --------
        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.1]}))
        >>> db.drop_table("fx")
        >>> db.execute("SHOW TABLES").height
        0
        >>> db.execute("CREATE SOURCE trades (x BIGINT); DROP TABLE IF EXISTS trades")
        >>> db.drop_table("trades")
        Traceback (most recent call last):
        ...
        laminar_polars.errors.CatalogError: 'trades' is a source, not a table; DROP SOURCE drops it
        """
        with self._lock:
            self.catalog.table(name)
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"table {name!r} is still read by {sorted(readers)}")
            del self.catalog.tables[name]

    def query(self, sql: str) -> pl.DataFrame:
        """Answer a SELECT over the current rows of views and registered tables.

        Sources hold no rows (they stream through), so they cannot be queried.
        """
        statements = parse_statements(sql)
        if len(statements) != 1 or not isinstance(statements[0], Query):
            raise SqlError("db.query takes exactly one SELECT statement")
        return self._query(sql)

    def _query(self, sql: str) -> pl.DataFrame:
        return query_snapshot(sql, self.catalog.tables, self._views, self._scheduler.at_barrier)

    # -- sources ----------------------------------------------------------------
    def create_source(
        self,
        name: str,
        schema: Mapping[str, Any] | pl.Schema,
        *,
        watermark: Watermark | None = None,
        config: SourceConfig | None = None,
        not_null: tuple[str, ...] | list[str] = (),
    ) -> Source:
        """Define a source from a Polars schema; returns a producer handle.

        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> src = db.create_source("quotes", {"symbol": pl.String, "bid": pl.Float64,
        ...                        "ts": pl.Datetime("us")}, watermark=lp.Watermark("ts", "50ms"))
        >>> src.channel
        'spsc'
        """
        self._add_source(source_definition(name, schema, watermark, config, not_null))
        return self.source(name)

    def _add_source(self, definition: SourceDef) -> None:
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

    def source(self, name: str, record_type: type | None = None) -> Source:
        """A producer handle of source ``name``; ``record_type`` (a dataclass or
        NamedTuple) is checked against the schema. A second handle on the same
        source makes its ring multi-producer, as ``clone()`` does."""
        definition = self.catalog.source(name)
        return Source(self._rings[name], definition, record_type)

    # -- sinks ----------------------------------------------------------------
    def create_sink(self, name: str, input: str, *, changelog: bool = False) -> Sink:
        """A sink named ``name`` reading source (or view) ``input``."""
        self._add_sink(SinkDef(name, input, changelog))
        return self._sinks[name]

    def _add_sink(self, definition: SinkDef) -> None:
        with self._lock:
            self._check_open()
            self.catalog.check_new_sink(definition.name)
            if definition.input not in self.catalog.sources | self.catalog.views:
                known = sorted(self.catalog.sources | self.catalog.views) or "none"
                raise CatalogError(f"sink {definition.name!r} reads unknown source or view "
                                   f"{definition.input!r} (known: {known})")
            schema = self._relation(definition.input).schema
            sink = Sink(definition.name, schema, changelog=definition.changelog)
            feed = SinkFeed(sink)
            self.catalog.sinks[definition.name] = definition
            self._sinks[definition.name] = sink
            self._feeds[definition.name] = feed
            attach_reader(self._views, self._scheduler, definition.input, feed)

    def sink(self, name: str) -> Sink:
        """The sink ``name``; a source name gives an implicit sink of the same name."""
        with self._lock:
            if name in self._sinks:
                return self._sinks[name]
            if name in self.catalog.sources or name in self.catalog.views:
                self._add_sink(SinkDef(name, name))
                return self._sinks[name]
        raise CatalogError(self.catalog.unknown_message("sink", name, self.catalog.sinks))

    # -- DROP / DESCRIBE -----------------------------------------------------
    def drop_sink(self, name: str) -> None:
        with self._lock:
            definition = self.catalog.sink(name)
            detach_reader(self._views, self._scheduler, definition.input, self._feeds.pop(name))
            del self.catalog.sinks[name]
            self._sinks.pop(name).close()

    def drop_source(self, name: str) -> None:
        """Drop a source no sink or view reads; its handles then raise `Closed`."""
        with self._lock:
            self.catalog.source(name)
            readers = self.catalog.readers_of(name)
            if readers:
                raise CatalogError(f"source {name!r} is still read by {sorted(readers)}")
            self._scheduler.remove_source(name)
            self._rings.pop(name).close()
            del self.catalog.sources[name]

    def describe(self, name: str) -> pl.DataFrame:
        """Columns of a source, materialized view or registered table (SQL:
        ``DESCRIBE name``): name, type, nullability, watermark delay.

        ``type`` is the SQL type name where the column has one of the source
        types (VARCHAR, DOUBLE, ...), else the Polars type (``UInt32`` for a
        ``count``). Only a source declares nullability: a view's or table's
        ``nullable`` is null, meaning unknown.

        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.1]}))
        >>> db.describe("fx").rows()
        [('ccy', 'VARCHAR', None, None), ('rate', 'DOUBLE', None, None)]
        """
        with self._lock:
            return describe(self.catalog, name)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start processing: results flow as soon as rows arrive."""
        with self._lock:
            self._check_open()
            self._state = "running"
            self._pid = os.getpid()
            _STARTED.add(self)
            self._scheduler.start()

    def stop(self) -> None:
        """Drain everything pushed, end every source's input (closing open
        windows), stop, and end every subscription. Idempotent.

        Waiting for the engine wakes on Ctrl-C (the engine then finishes
        draining on its own thread; call ``stop()`` again to wait for it).

        Raises
        ------
        EngineError
            If the engine failed (a view's expression failed at run time),
            before or during this drain; ``__cause__`` is the original error.
            Every source was closed at the failure; every row accepted before
            it still reached every reader not downstream of the failed view,
            and every subscription ends with `EngineError`. Raised by the
            first ``stop()`` only.
        """
        with self._lock:
            if self._forked_reason is not None:
                return  # the parent's engine owns these rows: never drain them here
            self._state = "stopped"
            _STARTED.discard(self)
            for ring in self._rings.values():
                ring.close()
            self._scheduler.stop()
            error = self._scheduler.error
            for sink in self._sinks.values():
                sink.close(error=error)  # each was ended by the engine; the first close stays
            if error is None or self._failure_reported:
                return
            self._failure_reported = True
        raise EngineError(f"the engine failed ({describe_failure(error)})") from error

    def __enter__(self) -> LaminarDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def _engine_state(self) -> str:
        if self._forked_reason is not None:
            return "forked"
        if self._scheduler.error is not None:
            return "failed"
        return self._state

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

    # -- introspection ----------------------------------------------------------
    def topology(self) -> dict[str, Any]:
        """Every channel and its derived kind.

        Sources: ``'spsc'`` until a second producer handle exists, then
        ``'mpsc'``. Sinks: ``'spsc'`` with at most one subscription, else
        ``'broadcast'``.
        """
        with self._lock:
            return topology_of(self.catalog, self._rings, self._views, self._sinks)

    def metrics(self) -> dict[str, Any]:
        """Counters: per source pushed/dropped/late/rejected/pending and its
        watermark; per sink, each subscription's lag."""
        with self._lock:
            engine = {"batches": self._scheduler.batches, "state": self._engine_state}
            return metrics_of(self._rings, self._views, self._sinks, engine)

    def __repr__(self) -> str:
        return (f"<LaminarDB {self._engine_state}: {len(self.catalog.sources)} sources, "
                f"{len(self.catalog.sinks)} sinks>")


def _shut_down(
    scheduler: Scheduler, rings: dict[str, _native.Ring], sinks: dict[str, Sink]
) -> None:
    """A database was collected (or the interpreter exits): stop its engine.

    Runs on whatever thread the collector ran, the engine's own included, so
    it never waits: the engine thread drains what the closed rings hold, ends
    every sink and exits by itself. In a forked child it does nothing.
    """
    if scheduler.forked:
        return
    for ring in list(rings.values()):
        if not ring.closed:  # a stopped database's rings keep their reason
            ring.close(reason="its database is no longer referenced (collected), or the "
                              "interpreter is exiting")
    if scheduler.thread is None:  # never started: nothing will end the sinks
        for sink in list(sinks.values()):
            sink.close()
    scheduler.shutdown()


def _after_fork_in_child() -> None:
    for db in list(_STARTED):
        db._after_fork_in_child()
    _STARTED.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def open(config: Config | None = None) -> LaminarDB:
    """Open an in-memory database (`Config` validated, `ConfigError` if invalid).

    >>> import laminar_polars as lp
    >>> lp.open(lp.Config(buffer_size=1024)).config.buffer_size
    1024
    """
    return LaminarDB(config)
