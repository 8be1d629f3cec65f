"""`LaminarDB`: the database as users see it, a thin, documented facade.

Each method turns what users write (SQL text, a LazyFrame, a Polars schema, a
frame) into catalog definitions and plans, and hands them to the database's
`Runtime` (`laminar_polars.db.runtime`), which builds and runs the pieces;
`statements` does the same for parsed SQL.

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

import datetime as dt
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from laminar_polars.catalog import Catalog, SinkDef
from laminar_polars.config import (
    Config,
    RetentionSetting,
    SourceConfig,
    Watermark,
    parse_retention,
    parse_state_ttl,
)
from laminar_polars.db.definitions import source_definition, table_frame
from laminar_polars.db.runtime import Runtime
from laminar_polars.db.statements import run_statement
from laminar_polars.errors import SqlError
from laminar_polars.frontend import plan_lazyframe, stream
from laminar_polars.io.sink import Sink
from laminar_polars.io.source import Source
from laminar_polars.plan import Node, validate
from laminar_polars.sql import Query, parse_statements

if TYPE_CHECKING:  # imported when used: the notebook module is for notebooks only
    from laminar_polars.notebook import LiveView

__all__ = ["LaminarDB", "open"]


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

    Parameters
    ----------
    config
        Settings; validated here (`ConfigError` if invalid). None: the defaults.

    Attributes
    ----------
    config
        The validated settings.

    Examples
    --------
    >>> import laminar_polars as lp
    >>> db = lp.LaminarDB(lp.Config(buffer_size=1024))
    >>> db.execute("CREATE SOURCE t (x BIGINT)")
    >>> db
    <LaminarDB created: 1 sources, 0 sinks>
    """

    def __init__(self, config: Config | None = None) -> None:
        self.config = (config or Config()).validate()
        self._runtime = Runtime(self.config)

    @property
    def runtime(self) -> Runtime:
        """The running pieces under this database, with definition-level
        add / drop methods and read-only views of the rings, view graphs and
        sinks; for tools and tests. Changes made through it are changes of
        this database, and holding it keeps the engine running after the
        database itself is dropped.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.runtime.relation("t").schema
        Schema([('x', Int64)])
        >>> list(db.runtime.rings)
        ['t']
        """
        return self._runtime

    @property
    def catalog(self) -> Catalog:
        """The definitions of every source, view, sink and table (read it; change
        it through this database's methods).

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT); CREATE SINK out FROM t")
        >>> db.catalog.sinks["out"]
        SinkDef(name='out', input='t', changelog=False)
        """
        return self._runtime.catalog

    # -- the seed's spellings ---------------------------------------------------
    @classmethod
    def open(cls, config: Config | None = None) -> LaminarDB:
        """The same as :func:`laminar_polars.open`.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> lp.LaminarDB.open().config.buffer_size == lp.Config().buffer_size
        True
        """
        return cls(config)

    @classmethod
    def open_with_config(cls, config: Config) -> LaminarDB:
        """The same as :func:`laminar_polars.open`, with settings required.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> lp.LaminarDB.open_with_config(lp.Config(buffer_size=1024)).config.buffer_size
        1024
        """
        return cls(config)

    # -- SQL ------------------------------------------------------------------
    def execute(self, sql: str) -> pl.DataFrame | None:
        """Run one or more ``;``-separated statements.

        Returns
        -------
        polars.DataFrame or None
            The last statement's result: a frame for SHOW, DESCRIBE, EXPLAIN
            and SELECT, else None.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT); CREATE SINK out FROM t")
        >>> db.execute("SHOW SINKS")["name"].to_list()
        ['out']
        """
        result = None
        for statement in parse_statements(sql):
            result = run_statement(self._runtime, statement)
        return result

    # -- materialized views -----------------------------------------------------
    def stream(self, name: str) -> pl.LazyFrame:
        """A LazyFrame standing for source or view ``name``, to build a view on
        with :meth:`create_materialized_view` (`CatalogError` if unknown); or
        for registered table ``name``, to join a stream with (a lookup join:
        the rows see the table as it is when they are processed).

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.stream("t").collect_schema()
        Schema([('x', Int64)])
        """
        return stream(self._runtime.relation(name))

    def create_materialized_view(
        self, name: str, query: pl.LazyFrame, emit: str | None = None, *,
        retention: RetentionSetting | Literal["default"] = "default",
        state_ttl: dt.timedelta | str | float | None = None,
    ) -> None:
        """Maintain ``query`` (built on :meth:`stream` frames) as view ``name``.

        ``emit`` is ``'on_window_close'`` (the default for windows) or
        ``'on_update'``. A plan the engine cannot maintain raises `PlanError`.
        ``retention`` is how much of its history an appending view keeps for
        :meth:`query`: a number of rows, an event-time span behind its
        watermark (``timedelta`` or text such as ``'1 hour'``), or None for
        everything; by default ``Config.view_retention``. A continuous
        aggregate holds one row per key and is never trimmed. ``state_ttl``
        (a duration) bounds the state of a join of two streams on keys
        alone: rows that far behind the join's watermark are freed (SQL:
        ``WITH (state_ttl = '1 hour')``).

        Examples
        --------
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
            plan = plan_lazyframe(query, self._runtime.relation, emit,
                                  parse_state_ttl(state_ttl))
        policy = None if retention == "default" else parse_retention(retention)
        self._runtime.add_view(name, plan, None, policy)

    def drop_materialized_view(self, name: str) -> None:
        """Drop a view no sink or other view reads (SQL: ``DROP MATERIALIZED
        VIEW``); `CatalogError` if it is unknown or still read.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.create_materialized_view("v", db.stream("t"))
        >>> db.drop_materialized_view("v")
        >>> db.execute("SHOW MATERIALIZED VIEWS").height
        0
        """
        self._runtime.drop_view(name)

    # -- tables -----------------------------------------------------------------
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
        self._runtime.register_table(name, table_frame(name, frame), replace=replace)

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
        self._runtime.drop_table(name)

    def query(self, sql: str) -> pl.DataFrame:
        """Answer a SELECT over the current rows of views and registered tables.

        Every view is read as of one moment between micro-batches. Sources
        hold no rows (they stream through), so they cannot be queried.

        Raises
        ------
        SqlError
            ``sql`` is not exactly one SELECT, or Polars cannot run it.
        CatalogError
            It reads a name that is no view or table.

        Examples
        --------
        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR", "GBP"], "rate": [1.1, 1.3]}))
        >>> db.query("SELECT ccy FROM fx WHERE rate > 1.2")["ccy"].to_list()
        ['GBP']
        >>> db.query("SELECT 1; SELECT 2")
        Traceback (most recent call last):
        ...
        laminar_polars.errors.SqlError: db.query takes exactly one SELECT statement
        """
        statements = parse_statements(sql)
        if len(statements) != 1 or not isinstance(statements[0], Query):
            raise SqlError("db.query takes exactly one SELECT statement")
        return self._runtime.query(sql)

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

        ``watermark`` overrides the one in ``config``; ``not_null`` names the
        columns that refuse nulls.

        Examples
        --------
        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> src = db.create_source("quotes", {"symbol": pl.String, "bid": pl.Float64,
        ...                        "ts": pl.Datetime("us")}, watermark=lp.Watermark("ts", "50ms"))
        >>> src.channel
        'spsc'
        """
        self._runtime.add_source(source_definition(name, schema, watermark, config, not_null))
        return self.source(name)

    def source(self, name: str, record_type: type | None = None) -> Source:
        """A producer handle of source ``name``.

        ``record_type`` (a dataclass or NamedTuple) is checked against the
        schema. A second handle on the same source makes its ring
        multi-producer, as ``clone()`` does.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> first = db.source("t")
        >>> first.channel
        'spsc'
        >>> second = db.source("t")
        >>> first.channel
        'mpsc'
        """
        return self._runtime.source(name, record_type)

    # -- sinks ----------------------------------------------------------------
    def create_sink(self, name: str, input: str, *, changelog: bool = False) -> Sink:
        """A sink named ``name`` reading source (or view) ``input``.

        ``changelog`` adds an ``op`` column saying whether each row is an
        ``'insert'`` or an ``'update'`` (of a continuous aggregate's key).

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> sub = db.create_sink("out", "t", changelog=True).subscribe()
        >>> db.source("t").push((1,))
        >>> db.stop()
        >>> sub.recv(timeout=10).rows()
        [(1, 'insert')]
        """
        return self._runtime.add_sink(SinkDef(name, input, changelog))

    def sink(self, name: str) -> Sink:
        """The sink ``name``; a source or view name gives an implicit sink of the
        same name reading it.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.sink("t")
        Sink('t', kind='spsc', closed=False)
        >>> db.execute("SHOW SINKS")["name"].to_list()
        ['t']
        """
        return self._runtime.sink(name)

    # -- DROP / DESCRIBE -----------------------------------------------------
    def drop_sink(self, name: str) -> None:
        """Drop sink ``name`` (SQL: ``DROP SINK``); its subscriptions end.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT); CREATE SINK out FROM t")
        >>> sub = db.sink("out").subscribe()
        >>> db.drop_sink("out")
        >>> sub.recv(timeout=10)
        Traceback (most recent call last):
        ...
        laminar_polars.errors.Closed: sink 'out' is closed
        """
        self._runtime.drop_sink(name)

    def drop_source(self, name: str) -> None:
        """Drop a source no sink or view reads (SQL: ``DROP SOURCE``); its
        handles then raise `Closed`.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> src = db.source("t")
        >>> db.drop_source("t")
        >>> src.push((1,))
        Traceback (most recent call last):
        ...
        laminar_polars.errors.Closed: the source is closed; no more rows are accepted
        """
        self._runtime.drop_source(name)

    def describe(self, name: str) -> pl.DataFrame:
        """Columns of a source, materialized view or registered table (SQL:
        ``DESCRIBE name``): name, type, nullability, watermark delay.

        ``type`` is the SQL type name where the column has one of the source
        types (VARCHAR, DOUBLE, ...), else the Polars type (``UInt32`` for a
        ``count``). Only a source declares nullability: a view's or table's
        ``nullable`` is null, meaning unknown.

        Examples
        --------
        >>> import polars as pl, laminar_polars as lp
        >>> db = lp.open()
        >>> db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.1]}))
        >>> db.describe("fx").rows()
        [('ccy', 'VARCHAR', None, None), ('rate', 'DOUBLE', None, None)]
        """
        return self._runtime.describe(name)

    # -- lifecycle -------------------------------------------------------------
    def start(self) -> None:
        """Start processing: results flow as soon as rows arrive.

        Raises `Closed` once the database is stopped.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> sub = db.sink("t").subscribe()
        >>> db.start()
        >>> db.source("t").push((1,))
        >>> sub.recv(timeout=10)["x"].to_list()
        [1]
        >>> db.stop()
        """
        self._runtime.start()

    def checkpoint(self) -> int | None:
        """Take a checkpoint now (with a ``data_dir``) and return its id.

        The views' states are taken between two micro-batches and written as
        Parquet files once the write-ahead log covers them; the newest
        ``Config.keep_checkpoints`` are kept. Returns None without a
        ``data_dir``, or when nothing changed since the last checkpoint.
        Raises `Closed` before `start` (which recovers the durable state) and
        after `stop` (which takes the last checkpoint).

        Examples
        --------
        >>> import tempfile, laminar_polars as lp
        >>> state = tempfile.mkdtemp()
        >>> setup = ("CREATE SOURCE t (k VARCHAR, x BIGINT);"
        ...          "CREATE MATERIALIZED VIEW total AS SELECT k, sum(x) AS x FROM t GROUP BY k")
        >>> db = lp.open(lp.Config(data_dir=state))
        >>> db.execute(setup)
        >>> db.start()
        >>> db.source("t").push_batch([("a", 1), ("a", 2)])
        >>> db.checkpoint()
        1
        >>> db.stop()
        >>> again = lp.open(lp.Config(data_dir=state))  # a restart: the same setup
        >>> again.execute(setup)
        >>> again.start()
        >>> again.query("SELECT k, x FROM total").rows()
        [('a', 3)]
        >>> again.stop()
        """
        return self._runtime.checkpoint()

    def stop(self) -> None:
        """Drain everything pushed, end every source's input (closing open
        windows), stop, and end every subscription. Idempotent.

        With a ``data_dir`` it first stops taking pushes, lets the engine take
        what was pushed, checkpoints that state and flushes the write-ahead
        log; the open windows it then closes for this run's subscribers stay
        open in the durable state (a restart emits them again, when the
        watermark passes them).

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

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> sub = db.sink("t").subscribe()
        >>> db.source("t").push((1,))
        >>> db.stop()
        >>> sub.recv(timeout=10)["x"].to_list()
        [1]
        >>> sub.recv(timeout=10)
        Traceback (most recent call last):
        ...
        laminar_polars.errors.Closed: sink 't' is closed
        >>> db.execute("CREATE SOURCE u (x BIGINT)")
        Traceback (most recent call last):
        ...
        laminar_polars.errors.Closed: the database is stopped
        """
        self._runtime.stop()

    def __enter__(self) -> LaminarDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- introspection ----------------------------------------------------------
    def topology(self) -> dict[str, Any]:
        """Every channel and its derived kind.

        Sources: ``'spsc'`` until a second producer handle exists, then
        ``'mpsc'``. Sinks: ``'spsc'`` with at most one subscription, else
        ``'broadcast'``.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open(lp.Config(buffer_size=1024))
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> producers = db.source("t"), db.source("t")
        >>> sorted(db.topology())
        ['sinks', 'sources', 'views']
        >>> db.topology()["sources"]
        {'t': {'channel': 'mpsc', 'producers': 2, 'capacity': 1024, 'readers': []}}
        """
        return self._runtime.topology()

    def metrics(self) -> dict[str, Any]:
        """Counters: per source pushed/dropped/late/rejected/pending and its
        watermark; per view its rows and watermark; per sink, each
        subscription's lag; the engine's micro-batches and state.

        Examples
        --------
        >>> import laminar_polars as lp
        >>> db = lp.open()
        >>> db.execute("CREATE SOURCE t (x BIGINT)")
        >>> db.source("t").push_batch([(1,), (2,)])
        >>> db.metrics()["sources"]["t"]["pushed"]
        2
        >>> db.metrics()["engine"]
        {'batches': 0, 'state': 'created'}
        """
        return self._runtime.metrics()

    # -- notebooks ----------------------------------------------------------------
    def live(self, view: str, chart: str | Callable[[pl.DataFrame], Any] | None = None, *,
             rows: int | None = None, interval: float = 0.5, **plot: Any) -> LiveView:
        """Show ``view``'s current rows in a notebook output that updates in place
        while the engine runs.

        The rows are what :meth:`query` answers (``view`` may also be a
        registered table, or a SELECT over views and tables); the output is
        redrawn at most every ``interval`` seconds, and only when the view
        changed. It stops updating once the database stops (after a last
        update) or fails, or on ``.stop()`` of the returned handle. Needs
        IPython (``pip install 'laminar_polars[notebook]'``); no server.

        Parameters
        ----------
        view
            A view (or table) name, or a SELECT statement.
        chart
            None: a table of the newest ``rows`` rows (default 20). The name
            of a ``DataFrame.plot`` method (``'line'``, ``'bar'``, ``'point'``,
            ``'area'``) called with ``**plot`` on the newest ``rows`` rows
            (default 5,000), or a function of those rows returning anything
            a notebook displays (e.g. an Altair chart); charts need Altair.
        rows
            How many of the newest rows to show or plot.
        interval
            Seconds between updates, at least.

        Returns
        -------
        laminar_polars.notebook.LiveView
            The handle: ``updates`` counts redraws, ``stop()`` and
            ``wait(timeout)`` end or await the updating.

        Examples
        --------
        In a notebook cell (the output then follows the view)::

            db.live("ohlc")
            db.live("ohlc", chart="line", x="window_start", y="close", color="symbol")
            db.live("SELECT symbol, max(high) AS high FROM ohlc GROUP BY symbol")
        """
        from laminar_polars.notebook import LiveView

        return LiveView(self, view, chart, rows=rows, interval=interval, **plot)

    def _repr_html_(self) -> str:
        """The notebook view: state, sources, views, sinks and tables with their
        counters and watermarks (see `laminar_polars.notebook.database_html`)."""
        from laminar_polars.notebook import database_html

        return database_html(self)

    def __repr__(self) -> str:
        catalog = self._runtime.catalog
        return (f"<LaminarDB {self._runtime.state}: {len(catalog.sources)} sources, "
                f"{len(catalog.sinks)} sinks>")


def open(config: Config | None = None) -> LaminarDB:
    """Open an in-memory database (`Config` validated, `ConfigError` if invalid).

    Examples
    --------
    >>> import laminar_polars as lp
    >>> lp.open(lp.Config(buffer_size=1024)).config.buffer_size
    1024
    """
    return LaminarDB(config)
