"""Notebooks: ``db.live`` shows a view in one output and updates it in place
until the database stops; the HTML reprs; the package imports without the
notebook extras; and the notebooks of notebooks/ run on a fresh kernel.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import subprocess
import sys
import textwrap
import time

import IPython.display
import nbformat
import polars as pl
import pytest
from nbclient import NotebookClient

import laminar_polars as lp
from laminar_polars.notebook import LiveView

REPO = pathlib.Path(lp.__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

DDL = """
CREATE SOURCE trades (symbol VARCHAR NOT NULL, price DOUBLE, qty BIGINT,
                      ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts);
CREATE MATERIALIZED VIEW bars AS
SELECT symbol, tumble(ts, INTERVAL '1' SECOND) AS window_start, last_value(price) AS close,
       count(*) AS trades
FROM trades GROUP BY symbol, tumble(ts, INTERVAL '1' SECOND);
CREATE SINK bar_sink FROM bars
"""
T0 = dt.datetime(2024, 1, 2, 9, 30)


class Display:
    """Stands for IPython.display.display: records what is shown and each update."""

    def __init__(self) -> None:
        self.shown: list[object] = []
        self.updates: list[object] = []

    def __call__(self, obj: object, display_id: object = None) -> Display:
        assert display_id is True  # a handle to update, not a one-off output
        self.shown.append(obj)
        return self

    def update(self, obj: object) -> None:
        self.updates.append(obj)


@pytest.fixture
def display(monkeypatch) -> Display:
    stub = Display()
    monkeypatch.setattr(IPython.display, "display", stub)
    return stub


def push_seconds(db: lp.LaminarDB, seconds: range) -> None:
    src = db.source("trades")
    for second in seconds:
        src.push_batch([("AAPL", 100.0 + second, 1, T0 + dt.timedelta(seconds=second)),
                        ("MSFT", 200.0 + second, 2,
                         T0 + dt.timedelta(seconds=second, milliseconds=500))])


def wait_for(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_live_table_updates_in_place_until_the_database_stops(display):
    db = lp.open()
    db.execute(DDL)
    live = db.live("bars", interval=0.01, rows=3)
    assert isinstance(live, LiveView)
    assert len(display.shown) == 1 and display.updates == []
    first = display.shown[0]
    assert first.frame.height == 0 and "view 'bars' · 0 rows" in repr(first)
    db.start()
    push_seconds(db, range(3))  # closes the 09:30:00 and :01 windows
    wait_for(lambda: any(u.frame.height for u in display.updates))
    push_seconds(db, range(3, 6))
    db.stop()
    assert live.wait(20) and not live.running
    final = display.updates[-1]
    everything = db.query("SELECT * FROM bars")
    assert everything.height == 12
    assert final.frame.equals(everything.tail(3))  # the newest rows
    assert "12 rows (newest 3 shown)" in final.caption and "stopped" in final.caption
    assert "watermark closed" in final.caption
    assert "<table" in final._repr_html_()
    assert len(display.shown) == 1  # one output, updated in place
    assert live.updates == len(display.updates) >= 2
    assert repr(live) == f"<LiveView 'bars': {live.updates} updates, stopped>"
    live._ipython_display_()  # as a cell's last value: nothing more is shown
    assert len(display.shown) == 1


def test_a_live_chart_is_a_polars_plot(display):
    db = lp.open()
    db.execute(DDL)
    chart = db.live("bars", chart="line", x="window_start", y="close", color="symbol",
                    interval=0.01)
    assert type(display.shown[0]).__module__.startswith("altair")
    db.start()
    push_seconds(db, range(4))
    db.stop()
    assert chart.wait(20)
    final = display.updates[-1]
    assert type(final).__module__.startswith("altair")
    assert final.data.equals(db.query("SELECT * FROM bars"))
    assert final.to_dict()["mark"]["type"] == "line"


def test_a_chart_may_be_any_function_of_the_rows_and_a_query_is_a_view(display):
    db = lp.open()
    db.execute(DDL)
    live = db.live("SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol",
                   chart=lambda frame: frame.rows(), interval=0.01)
    assert display.shown == [[]]
    db.start()
    push_seconds(db, range(3))
    db.stop()
    assert live.wait(20)
    assert display.updates[-1] == [("AAPL", 3), ("MSFT", 3)]


def test_a_chart_that_fails_later_says_so_and_stops(display):
    db = lp.open()
    db.execute(DDL)

    def chart(frame: pl.DataFrame) -> int:
        if frame.height:
            raise ValueError("no chart for you")
        return 0

    live = db.live("bars", chart=chart, interval=0.01)
    db.start()
    push_seconds(db, range(3))
    assert live.wait(20)  # stopped by the failure, though the database runs
    assert "update failed: ValueError: no chart for you" in repr(display.updates[-1])
    db.stop()


def test_live_refuses_what_it_cannot_show(display, monkeypatch):
    db = lp.open()
    db.execute(DDL)
    with pytest.raises(lp.CatalogError, match="nope"):
        db.live("nope")
    with pytest.raises(TypeError, match="chart"):
        db.live("bars", chart=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="interval"):
        db.live("bars", interval=0)
    assert display.shown == []
    monkeypatch.setitem(sys.modules, "IPython", None)
    monkeypatch.setitem(sys.modules, "IPython.display", None)
    with pytest.raises(ImportError, match=r"laminar_polars\[notebook\]"):
        db.live("bars")


def test_html_reprs():
    db = lp.open()
    db.execute(DDL)
    db.register_table("fx", pl.DataFrame({"ccy": ["EUR"], "rate": [1.1]}))
    sub = db.sink("bar_sink").subscribe()
    first = db._repr_html_()
    for text in ("<b>LaminarDB</b>", "created", "trades", "symbol VARCHAR", "bars",
                 "bar_sink", "fx", "rows/s"):
        assert text in first
    db.start()
    push_seconds(db, range(3))
    wait_for(lambda: db.metrics()["views"]["bars"]["rows_out"] == 4)
    second = db._repr_html_()
    assert "running" in second and "2024-01-02 09:30:02.500" in second  # the watermark
    assert ">6<" in second  # rows pushed, and a rate since the previous repr
    sink = db.sink("bar_sink")._repr_html_()
    assert "sink bar_sink" in sink and "window_start TIMESTAMP" in sink and ">4<" in sink
    view = db.catalog.views["bars"]._repr_html_()
    assert "reads trades" in view and "WindowAgg" in view and "TUMBLE" in view
    db.stop()
    sub.close()


def test_the_package_needs_no_notebook_extra():
    code = textwrap.dedent("""
        import sys

        for name in ("IPython", "IPython.display", "altair", "ipykernel", "nbclient"):
            sys.modules[name] = None  # as if not installed: importing it raises ImportError
        import laminar_polars as lp
        from laminar_polars import backtest, cli, notebook
        db = lp.open()
        db.execute("CREATE SOURCE t (x BIGINT); CREATE MATERIALIZED VIEW v AS "
                   "SELECT x FROM t; CREATE SINK s FROM v")
        html = db._repr_html_() + db.sink("s")._repr_html_()
        html += db.catalog.views["v"]._repr_html_()
        try:
            db.live("v")
        except ImportError as error:
            print(error)
        loaded = [m for m in sys.modules if m.split(".")[0] in ("IPython", "altair")
                  and sys.modules[m] is not None]
        assert not loaded, loaded
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "db.live needs IPython: pip install 'laminar_polars[notebook]'\n"


# -- notebooks on a real kernel ------------------------------------------------------------
@pytest.fixture
def kernel_env(monkeypatch):
    """The kernel (a child process) imports this checkout of the package."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's own deprecation


def execute(notebook: nbformat.NotebookNode, folder: pathlib.Path) -> nbformat.NotebookNode:
    client = NotebookClient(notebook, timeout=180, kernel_name="python3",
                            resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError, with the cell's traceback, on an error
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.outputs]


def text_of(output: dict) -> str:
    return output.get("text") or output.get("data", {}).get("text/plain", "")


def test_live_in_a_notebook_updates_its_output(tmp_path, kernel_env):
    cells = [
        f"import datetime as dt, laminar_polars as lp\ndb = lp.open()\ndb.execute('''{DDL}''')",
        "live = db.live('bars', interval=0.05)\nlive",
        textwrap.dedent("""\
            db.start()
            src = db.source('trades')
            t0 = dt.datetime(2024, 1, 2, 9, 30)
            for second in range(5):
                src.push(('AAPL', 1.0 + second, 1, t0 + dt.timedelta(seconds=second)))
            db.stop()
            print(live.wait(30), live.updates > 0, db.query('SELECT * FROM bars').height)"""),
    ]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    execute(notebook, tmp_path)
    shown = notebook.cells[1].outputs
    assert len(shown) == 1 and shown[0]["output_type"] == "display_data"  # one output
    assert "transient" not in shown[0] or shown[0]["transient"].get("display_id")
    # the output was updated in place: it holds the final rows, not the empty view
    assert text_of(shown[0]).startswith("view 'bars' · 5 rows · watermark closed · stopped")
    assert text_of(notebook.cells[2].outputs[0]) == "True True 5\n"


def test_notebooks_are_stored_without_outputs():
    names = sorted(path.name for path in NOTEBOOKS.glob("*.ipynb"))
    assert names == ["backtest.ipynb", "ohlc_live.ipynb", "quickstart.ipynb"]
    for name in names:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, name


@pytest.mark.parametrize("name", ["quickstart.ipynb", "ohlc_live.ipynb", "backtest.ipynb"])
def test_a_notebook_runs_on_a_fresh_kernel(name, tmp_path, kernel_env):
    notebook = execute(nbformat.read(NOTEBOOKS / name, as_version=4), tmp_path)
    assert not [o for o in outputs(notebook) if o["output_type"] == "error"]
    texts = [text_of(o) for o in outputs(notebook)]
    if name == "ohlc_live.ipynb":  # each live output ended showing the final rows
        lives = [t for t in texts if t.startswith("view '")]
        assert len(lives) == 2 and all("stopped" in t for t in lives), lives
        assert any(t.startswith("table redrawn ") for t in texts)
    if name == "backtest.ipynb":
        assert any("bars equal: True" in t for t in texts)
        assert any("priced equal: True" in t for t in texts)  # the ASOF join's step
        assert (tmp_path / "bars.parquet").is_file() and (tmp_path / "vwap.parquet").is_file()
