"""``laminar-polars run``: replay files through a pipeline, the backtest.

PIPELINE.sql holds the pipeline's statements (sources, views, sinks), the same
SQL a live service runs. Each --input SOURCE=PATH file (Parquet, CSV, Arrow IPC
or NDJSON, by extension) is read lazily and pushed into its source in Arrow
batches in file order; several inputs are merged by event time (each source's
watermark column). --speed X paces event time at X times the wall clock (0, the
default: as fast as possible). Each --output SINK=PATH sink (or view) is written
to that file, in the format its extension names; every other sink of the
pipeline prints its rows live on standard output, as CSV lines that start with
the sink's name (a sink's first line is its header). A progress bar on standard
error shows rows, rows/s, the watermark and late rows (on a terminal; --progress
forces it, --quiet hides it).
Exit 0 on success; a bad argument or input: one line naming it, exit 2.

The replay itself is `laminar_polars.backtest`; this module reads the command
line and drives the terminal and the output files. docs/cli.md has examples.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import pathlib
import sys
import time
import warnings
from typing import Any, TextIO

import polars as pl

import laminar_polars as lp
from laminar_polars.backtest import DEFAULT_BATCH_ROWS, Input, InputError, Replay
from laminar_polars.io.files import FileWriter, file_format

__all__ = ["add_arguments", "main", "run_pipeline"]

# Bad arguments or input: exit 2 with one line (anything else failing is exit 1).
BAD_INPUT = (InputError, lp.SqlError, lp.CatalogError, lp.SchemaError, lp.ConfigError,
             lp.PlanError)
# A subscription of an output never drops rows: the command reads it between pushes.
NO_LAG_LIMIT = 2**62


def add_arguments(run: argparse.ArgumentParser) -> None:
    """The arguments of ``laminar-polars run``."""
    run.add_argument("pipeline", metavar="PIPELINE.sql",
                     help="the pipeline's SQL statements (sources, views, sinks)")
    run.add_argument("--input", action="append", required=True, metavar="SOURCE=PATH",
                     help="a file to push into SOURCE (.parquet, .csv, .arrow/.ipc/.feather, "
                          ".ndjson/.jsonl); repeat for more inputs")
    run.add_argument("--output", action="append", default=[], metavar="SINK=PATH",
                     help="write SINK's rows (a sink, view or source) to PATH, format by "
                          "extension; sinks without one print their rows")
    run.add_argument("--speed", type=float, default=0.0, metavar="X",
                     help="event time runs X times faster than the wall clock; 0 = no "
                          "pacing (default 0)")
    run.add_argument("--data-dir", metavar="DIR",
                     help="the database's data_dir (lp.Config(data_dir=DIR))")
    run.add_argument("--batch-rows", type=int, default=DEFAULT_BATCH_ROWS, metavar="N",
                     help=f"rows per Arrow batch read from a file (default {DEFAULT_BATCH_ROWS})")
    shown = run.add_mutually_exclusive_group()
    shown.add_argument("--progress", action="store_true", default=None,
                       help="show progress on standard error even when it is not a terminal")
    shown.add_argument("--quiet", action="store_false", dest="progress",
                       help="no progress on standard error")


def main(args: argparse.Namespace) -> int:
    """Run ``laminar-polars run`` for parsed ``args``; the exit code."""
    if not args.speed >= 0 or args.speed == float("inf"):
        args.parser.error(f"--speed must be a number >= 0, got {args.speed:g}")
    if args.batch_rows < 1:
        args.parser.error(f"--batch-rows must be at least 1, got {args.batch_rows}")
    return run_pipeline(args)


def run_pipeline(args: argparse.Namespace, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    """The command for parsed ``args``, printing rows to ``out`` and progress
    and errors to ``err`` (default: standard output and error); the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        return _run(args, out, err)
    except BAD_INPUT as error:
        _fail(err, error)
        return 2
    except lp.LaminarError as error:  # the engine failed: not the input's fault as such
        _fail(err, error)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # whoever read standard output went away (``| head``)
        if out is sys.stdout:  # so that Python's own flush at exit does not fail again
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def _fail(err: TextIO, error: BaseException) -> None:
    text = " ".join(str(error).split())  # one line, whatever the message holds
    err.write(f"laminar-polars run: error: {text}\n")
    err.flush()


@dataclasses.dataclass
class _Output:
    sink: str
    path: pathlib.Path

    @classmethod
    def parse(cls, text: str) -> _Output:
        sink, equals, path = text.partition("=")
        if not equals or not sink.strip() or not path:
            raise InputError(f"--output takes SINK=PATH, got {text!r}")
        output = cls(sink.strip(), pathlib.Path(path))
        try:
            file_format(output.path)
        except ValueError as error:
            raise InputError(f"--output {text}: {error}") from None
        return output


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    inputs = [Input.parse(text) for text in args.input]
    outputs = [_Output.parse(text) for text in args.output]
    seen: set[str] = set()
    for output in outputs:
        if output.sink in seen:
            raise InputError(f"--output names sink {output.sink!r} twice")
        seen.add(output.sink)
    try:
        sql = pathlib.Path(args.pipeline).read_text()
    except (OSError, UnicodeDecodeError) as error:
        reason = getattr(error, "strerror", None) or error
        raise InputError(f"cannot read pipeline {args.pipeline!r}: {reason}") from None

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        db = lp.open(lp.Config(data_dir=args.data_dir))
        try:
            db.execute(sql)
        except BAD_INPUT as error:
            db.stop()
            raise InputError(f"{args.pipeline}: {error}") from error
    for warning in caught:
        err.write(f"laminar-polars run: warning: {warning.message}\n")

    writers: dict[str, FileWriter] = {}
    progress: _Progress | None = None
    try:
        replay = Replay(db, inputs, speed=args.speed, batch_rows=args.batch_rows)
        catalog = db.catalog
        known = {**catalog.sinks, **catalog.views, **catalog.sources}
        for output in outputs:
            if output.sink not in known:
                raise lp.CatalogError(f"--output {output.sink}={output.path}: " +
                                      catalog.unknown_message("sink", output.sink, known))
        printed = [name for name in catalog.sinks if name not in seen]
        for name in catalog.sources:
            if name not in {spec.source for spec in inputs}:
                err.write(f"laminar-polars run: warning: source {name!r} has no --input; "
                          f"it stays empty\n")
        for output in outputs:
            try:
                writers[output.sink] = FileWriter(output.path, db.sink(output.sink).schema)
            except ValueError as error:
                raise InputError(f"--output {output.sink}={output.path}: {error}") from None
        subscriptions = {name: db.sink(name).subscribe(max_lag_rows=NO_LAG_LIMIT)
                         for name in [*writers, *printed]}
        progress = _Progress(err, args.progress, db, replay)
        printer = _Printer(out, progress)

        def take(name: str, frame: pl.DataFrame | None) -> None:
            if frame is None or frame.height == 0:
                return
            if name in writers:
                writers[name].write(frame)
            else:
                printer.rows(name, frame)

        def tick() -> None:
            for name, subscription in subscriptions.items():
                take(name, subscription.poll())
            progress.show()

        # Without a data_dir the inputs' end closes the sources. With one, stop()
        # ends this run's input alone (its windows still reach the outputs) and
        # the durable state stays open: the next run over it goes on from there.
        replay.run(tick, close=args.data_dir is None)
        db.stop()  # drains every source, ends the input and the subscriptions
        for name, subscription in subscriptions.items():
            for frame in subscription:
                take(name, frame)
        for writer in writers.values():
            writer.close()
        progress.done(writers)
        return 0
    finally:
        if progress is not None:
            progress.clear()  # an error or ^C is not written after the bar, on its line
        for writer in writers.values():
            writer.discard()  # a no-op for a writer already closed
        try:
            db.stop()
        except lp.LaminarError:
            pass  # already reported: the error that got us here is the one to tell


def _clock(value: dt.datetime) -> str:
    """A watermark for the progress line: ``-`` before any event, ``closed`` after."""
    if value == dt.datetime.min:
        return "-"
    if value == dt.datetime.max:
        return "closed"
    return f"{value:%Y-%m-%d %H:%M:%S.%f}"[:-3]


class _Progress:
    """The progress bar on standard error: updated in place on a terminal, a
    line a second otherwise (when forced), nothing when off."""

    WIDTH = 20  # characters of the bar itself

    def __init__(self, err: TextIO, enabled: bool | None, db: lp.LaminarDB,
                 replay: Replay) -> None:
        self.err = err
        self.tty = hasattr(err, "isatty") and err.isatty()
        self.enabled = self.tty if enabled is None else enabled
        self.db = db
        self.replay = replay
        self.sources = sorted({spec.source for spec in replay.inputs})
        self.total = replay.total_rows if self.enabled else None
        self.start = time.monotonic()
        self.next_show = self.start + (0.1 if self.tty else 1.0)
        self.shown = ""  # the text now on the terminal's last line
        self.drawn = False  # shown at least once

    def text(self) -> str:
        rows = self.replay.rows
        elapsed = max(time.monotonic() - self.start, 1e-9)
        stats = self.db.metrics()["sources"]
        watermark = min(stats[name]["watermark"] for name in self.sources)
        late = sum(stats[name]["late"] for name in self.sources)
        bar = ""
        if self.total:
            done = min(rows / self.total, 1.0)
            filled = int(done * self.WIDTH)
            bar = f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {done:4.0%} "
        return (f"{bar}{rows:,} rows, {rows / elapsed:,.0f} rows/s, "
                f"watermark {_clock(watermark)}, late {late:,}")

    def show(self, force: bool = False) -> None:
        now = time.monotonic()
        # taken off the terminal for rows printed since: put back at once
        cleared = self.tty and self.drawn and not self.shown
        if not self.enabled or (now < self.next_show and not force and not cleared):
            return
        self.drawn = True
        self.next_show = now + (0.1 if self.tty else 1.0)
        self.clear()
        if self.tty:
            self.shown = "# " + self.text()
            self.err.write(self.shown)
        else:
            self.err.write("# " + self.text() + "\n")
        self.err.flush()

    def clear(self) -> None:
        """Take the bar off the terminal (before rows are printed under it)."""
        if self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = ""

    def done(self, writers: dict[str, FileWriter]) -> None:
        if not self.enabled:
            return
        self.clear()
        rows = self.replay.rows
        seconds = max(time.monotonic() - self.start, 1e-9)
        stats = self.db.metrics()["sources"]
        late = sum(stats[name]["late"] for name in self.sources)
        dropped = sum(stats[name]["dropped"] for name in self.sources)
        wrote = "".join(f"; wrote {w.path} ({w.rows:,} rows)" for w in writers.values())
        lost = f", {dropped:,} dropped (drop_oldest)" if dropped else ""
        self.err.write(f"# done: {rows:,} rows in {seconds:.2f} s "
                       f"({rows / seconds:,.0f} rows/s), {late:,} late rows dropped"
                       f"{lost}{wrote}\n")
        self.err.flush()


class _Printer:
    """Rows of the sinks without an output, as CSV lines on standard output.

    Every line of a sink starts with the sink's name, its first line being its
    header: ``grep '^name,' | cut -d, -f2-`` is that sink's CSV.
    """

    def __init__(self, out: TextIO, progress: _Progress) -> None:
        self.out = out
        self.progress = progress
        self.headed: set[str] = set()

    def rows(self, name: str, frame: pl.DataFrame) -> None:
        # the label column takes the sink's name, unless one of the sink's columns has it
        label = name if name not in frame.columns else f"{name}_"
        text: Any = frame.select(pl.lit(name).alias(label), pl.all()).write_csv(
            include_header=name not in self.headed)
        self.headed.add(name)
        self.progress.clear()
        self.out.write(text)
        self.out.flush()
