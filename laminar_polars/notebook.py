"""Notebooks: live views (`LaminarDB.live`) and the database's HTML repr.

``db.live(view)`` shows the view's current rows (what ``db.query`` answers) in
one output that updates in place while the engine runs: an IPython display
handle, updated from a background thread at most every ``interval`` seconds,
and only when the view changed (its counters in ``db.metrics()`` moved). With
``chart=`` the output is a Polars ``.plot`` chart (Altair) of the rows instead.
Updating stops once the database stops (after one last update), fails, or is
collected, or on :meth:`LiveView.stop`. There is no server: the notebook's own
kernel sends the updates.

IPython (and Altair, for charts) are optional: ``pip install
laminar_polars[notebook]``. Importing this module needs neither; ``db.live``
without IPython raises ImportError saying what to install.

Examples
--------
>>> import laminar_polars as lp
>>> db = lp.open()
>>> db.execute("CREATE SOURCE t (k VARCHAR, x BIGINT)")
>>> html = database_html(db)
>>> "<b>LaminarDB</b>" in html and ">t<" in html
True
"""

from __future__ import annotations

import datetime as dt
import importlib
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import polars as pl

from laminar_polars import _html

if TYPE_CHECKING:
    from laminar_polars.db import LaminarDB

__all__ = ["LiveView", "database_html"]

INSTALL_HINT = "pip install 'laminar_polars[notebook]'"
TABLE_ROWS = 20  # rows a live table shows by default (the newest)
CHART_ROWS = 5_000  # rows a live chart plots by default (Altair's own limit)

# The last counters each database's HTML repr saw, to show rates between reprs.
_LAST_SEEN: weakref.WeakKeyDictionary[Any, tuple[float, dict[str, int]]] = (
    weakref.WeakKeyDictionary())


def _state(db: LaminarDB) -> str:
    return db.runtime.state


# -- the database's HTML repr ---------------------------------------------------------
def database_html(db: LaminarDB) -> str:
    """The database's ``_repr_html_``: its state, then a table each of its
    sources (columns, watermark, counters and the rate since the previous
    repr), views (inputs, rows, watermark), sinks (input, subscriptions, lag)
    and tables, from ``db.metrics()`` and the catalog."""
    metrics = db.metrics()
    catalog = db.catalog
    now = time.monotonic()
    pushed = {name: stats["pushed"] for name, stats in metrics["sources"].items()}
    before = _LAST_SEEN.get(db)
    _LAST_SEEN[db] = (now, pushed)

    def rate(name: str) -> float | None:
        if before is None or name not in before[1] or now <= before[0]:
            return None
        return (pushed[name] - before[1][name]) / (now - before[0])

    parts = []
    if catalog.sources:
        rows = []
        for name, definition in catalog.sources.items():
            stats = metrics["sources"].get(name, {})
            columns = ", ".join(f"{c.name} {c.type.sql}" for c in definition.columns)
            rows.append([name, columns, stats.get("watermark"), stats.get("pushed"),
                         rate(name), stats.get("late"), stats.get("dropped"),
                         stats.get("pending")])
        parts.append(_section("sources", ["name", "columns", "watermark", "pushed", "rows/s",
                                          "late", "dropped", "pending"], rows))
    if catalog.views:
        rows = []
        for name, view in catalog.views.items():
            stats = metrics["views"].get(name, {})
            rows.append([name, ", ".join(view.inputs), stats.get("watermark"),
                         stats.get("rows_in"), stats.get("rows_out"),
                         stats.get("retained_rows"), stats.get("state_rows")])
        parts.append(_section("materialized views", ["name", "reads", "watermark", "rows in",
                                                     "rows out", "retained", "state rows"],
                              rows))
    if catalog.sinks:
        rows = []
        for name, sink in catalog.sinks.items():
            subscriptions = metrics["sinks"].get(name, {}).get("subscriptions", [])
            rows.append([name, sink.input, len(subscriptions),
                         sum(s["lag_rows"] for s in subscriptions),
                         sum(s["dropped_rows"] for s in subscriptions)])
        parts.append(_section("sinks", ["name", "reads", "subscriptions", "lag rows",
                                        "dropped rows"], rows))
    if catalog.tables:
        rows = [[name, frame.height, ", ".join(frame.columns)]
                for name, frame in catalog.tables.items()]
        parts.append(_section("tables", ["name", "rows", "columns"], rows))
    engine = metrics["engine"]
    return _html.block("LaminarDB", parts,
                       f"{engine['state']} · {engine['batches']:,} micro-batches")


def _section(title: str, columns: list[str], rows: list[list[Any]]) -> str:
    return f'<div style="margin-top:4px"><i>{_html.escape(title)}</i></div>' + _html.table(
        columns, rows)


# -- live views -------------------------------------------------------------------------
class _Rows:
    """What a live table shows: a caption line and the newest rows."""

    def __init__(self, caption: str, frame: pl.DataFrame | None, error: str = "") -> None:
        self.caption, self.frame, self.error = caption, frame, error

    def _repr_html_(self) -> str:
        parts = []
        if self.error:
            parts.append(f'<pre style="color:#a00">{_html.escape(self.error)}</pre>')
        if self.frame is not None:
            with pl.Config(tbl_rows=self.frame.height, fmt_str_lengths=40):
                parts.append(self.frame._repr_html_())
        return _html.block("live", parts, self.caption)

    def __repr__(self) -> str:
        lines = [self.caption]
        if self.error:
            lines.append(self.error)
        if self.frame is not None:
            with pl.Config(tbl_rows=self.frame.height):
                lines.append(repr(self.frame))
        return "\n".join(lines)


class LiveView:
    """A notebook output showing a view's rows (or a chart of them), updated in
    place while the engine runs. Made by `LaminarDB.live`; see there.

    Attributes
    ----------
    updates
        How many times the output has been redrawn since it was first shown.
    """

    def __init__(self, db: LaminarDB, view: str,
                 chart: str | Callable[[pl.DataFrame], Any] | None = None, *,
                 rows: int | None = None, interval: float = 0.5, **plot: Any) -> None:
        try:
            import IPython.display
        except ImportError as error:
            raise ImportError(f"db.live needs IPython: {INSTALL_HINT}") from error
        if chart is not None and not callable(chart) and not isinstance(chart, str):
            raise TypeError(f"chart is a DataFrame.plot method's name ('line', 'bar', "
                            f"'point', 'area') or a function of the rows, got {chart!r}")
        if isinstance(chart, str):
            try:
                importlib.import_module("altair")  # Polars' .plot draws with it
            except ImportError as error:
                raise ImportError(f"db.live(chart=...) needs Altair: {INSTALL_HINT}") from error
        if chart is not None:
            try:  # now, on this thread: Altair looks for pandas in sys.modules, where
                importlib.import_module("pandas")  # another thread's import may be half done
            except ImportError:
                pass
        if not interval > 0:
            raise ValueError(f"interval is seconds between updates, > 0; got {interval!r}")
        self.view = view
        self.chart = chart
        self.plot = plot
        self.rows = rows if rows is not None else (CHART_ROWS if chart else TABLE_ROWS)
        self.interval = interval
        self.updates = 0
        is_query = len(view.split()) > 1  # a SELECT; else a view's or table's name
        self._sql = view if is_query else f'SELECT * FROM "{view}"'
        self._is_view = view in db.catalog.views
        self._db = weakref.ref(db)
        self._stopped = threading.Event()
        self._seen: object = None
        first = self._content(db)  # errors here (an unknown view, a bad chart) are raised
        display: Any = IPython.display.display
        self._handle = display(first, display_id=True)
        self._thread = threading.Thread(target=self._loop, name=f"laminar-live-{view}",
                                        daemon=True)
        self._thread.start()

    @property
    def running(self) -> bool:
        """Whether the output still updates."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Stop updating (the output keeps what it shows)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until updating has stopped (the database stopped and the last
        update was shown); False if ``timeout`` seconds passed first."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _ipython_display_(self) -> None:
        # Already shown by db.live: the handle, as a cell's last value, adds nothing.
        pass

    def __repr__(self) -> str:
        state = "updating" if self.running else "stopped"
        return f"<LiveView {self.view!r}: {self.updates} updates, {state}>"

    def _loop(self) -> None:
        while not self._stopped.wait(self.interval):
            db = self._db()
            if db is None:
                return
            state = _state(db)
            if self._changed(db):
                try:
                    content = self._content(db)
                except Exception as error:  # a query or chart that broke: say so, and stop
                    content = _Rows(f"{self.view} · {state}", None,
                                    f"update failed: {type(error).__name__}: {error}")
                self._handle.update(content)
                self.updates += 1
                if isinstance(content, _Rows) and content.error:
                    return
            if state not in ("created", "running"):
                return
            del db

    def _changed(self, db: LaminarDB) -> bool:
        """Whether what the view holds may have changed since the last draw."""
        metrics = db.metrics()
        if self._is_view:
            stats = metrics["views"].get(self.view, {})
            mark: object = (stats.get("rows_out"), stats.get("retained_rows"),
                            stats.get("watermark"), metrics["engine"]["state"])
        else:  # a query over several views: any micro-batch may change it
            mark = (metrics["engine"]["batches"], metrics["engine"]["state"])
        changed = mark != self._seen
        self._seen = mark
        return changed

    def _content(self, db: LaminarDB) -> Any:
        self._changed(db)  # what is drawn now is what the next change is judged from
        frame = db.query(self._sql)
        shown = frame.tail(self.rows)
        if self.chart is None:
            return _Rows(self._caption(db, frame, shown), shown)
        if isinstance(self.chart, str):
            return getattr(shown.plot, self.chart)(**self.plot)
        return self.chart(shown)

    def _caption(self, db: LaminarDB, frame: pl.DataFrame, shown: pl.DataFrame) -> str:
        state = _state(db)
        parts = [self.view if not self._is_view else f"view {self.view!r}",
                 f"{frame.height:,} rows" + (f" (newest {shown.height:,} shown)"
                                             if shown.height < frame.height else "")]
        if self._is_view:
            watermark = db.metrics()["views"].get(self.view, {}).get("watermark")
            if watermark is not None:
                parts.append(f"watermark {_html.cell_text(watermark)}")
        parts.append(f"{state} · {dt.datetime.now():%H:%M:%S}")
        return " · ".join(parts)
