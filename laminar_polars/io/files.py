"""Files in and out: what ``laminar-polars run`` reads into sources and writes from sinks.

The format is chosen by the file's extension (`FORMATS`): Parquet, CSV, Arrow
IPC and NDJSON. An input is read lazily with Polars (:func:`scan_file`): only the
source's columns are read, in file order, and text columns of CSV and NDJSON files
are parsed into the source's TIMESTAMP and DATE columns; every other conversion
is left to `Source.push_arrow`, which casts within a type family and refuses the
rest. An output (:class:`FileWriter`) is written frame by frame as a sink emits,
into a temporary file beside it that takes its name only once the writer is
closed successfully, so a run that fails leaves no half-written result.

Examples
--------
>>> import pathlib, tempfile
>>> import polars as pl
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> _ = (folder / "trades.csv").write_text("ts,symbol,price\\n2024-01-02 09:30:00,007,1.5\\n")
>>> schema = pl.Schema({"symbol": pl.String, "price": pl.Float64, "ts": pl.Datetime("us")})
>>> scan_file(folder / "trades.csv", schema).collect()
shape: (1, 3)
┌────────┬───────┬─────────────────────┐
│ symbol ┆ price ┆ ts                  │
│ ---    ┆ ---   ┆ ---                 │
│ str    ┆ f64   ┆ datetime[μs]        │
╞════════╪═══════╪═════════════════════╡
│ 007    ┆ 1.5   ┆ 2024-01-02 09:30:00 │
└────────┴───────┴─────────────────────┘
>>> with FileWriter(folder / "out.parquet", schema) as out:
...     out.write(pl.DataFrame({"symbol": ["A"], "price": [1.0], "ts": [None]}, schema=schema))
>>> pl.read_parquet(folder / "out.parquet")["symbol"].to_list()
['A']
"""

from __future__ import annotations

import os
import pathlib
from typing import IO, Any

import polars as pl
import pyarrow as pa
import pyarrow.ipc as pa_ipc
import pyarrow.parquet as pa_parquet

__all__ = ["FORMATS", "FileWriter", "file_format", "scan_file"]

# Extension (lower case) -> format.
FORMATS = {
    ".parquet": "parquet", ".pq": "parquet",
    ".csv": "csv",
    ".arrow": "ipc", ".ipc": "ipc", ".feather": "ipc",
    ".ndjson": "ndjson", ".jsonl": "ndjson",
}


def file_format(path: str | os.PathLike[str]) -> str:
    """``'parquet'``, ``'csv'``, ``'ipc'`` or ``'ndjson'``, from ``path``'s extension.

    Raises ValueError naming the extensions known.

    >>> file_format("day.PARQUET"), file_format("quotes.jsonl")
    ('parquet', 'ndjson')
    >>> file_format("trades.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: unknown file format '.txt' (expected .parquet, .pq, .csv, ..., .jsonl)
    """
    suffix = pathlib.Path(path).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"unknown file format {suffix or '(no extension)'!r} "
                         f"(expected {', '.join(FORMATS)})")
    return FORMATS[suffix]


def scan_file(path: str | os.PathLike[str], schema: pl.Schema) -> pl.LazyFrame:
    """A LazyFrame of ``path``'s rows with ``schema``'s columns, in that order.

    Columns the schema lacks are not read. Text read from CSV or NDJSON is
    parsed where the schema has a TIMESTAMP (``str.to_datetime``) or DATE; a
    CSV column the schema types as text is read as text (``007`` stays
    ``007``). Other types are left as the file has them.

    Raises
    ------
    ValueError
        The extension is unknown, the file cannot be read, or it lacks a column.
    """
    kind = file_format(path)
    path = pathlib.Path(path)
    try:
        if kind == "parquet":
            frame = pl.scan_parquet(path)
        elif kind == "ipc":
            frame = pl.scan_ipc(path)
        elif kind == "ndjson":
            frame = pl.scan_ndjson(path)
        else:
            header = pl.scan_csv(path).collect_schema()
            frame = pl.scan_csv(path, schema_overrides={
                name: pl.String() for name, dtype in schema.items()
                if name in header and (dtype == pl.String or dtype.is_temporal())
            })
        found = frame.collect_schema()
    except (OSError, pl.exceptions.PolarsError) as error:
        raise ValueError(f"cannot read {kind} file: {_first_line(error)}") from error
    missing = [name for name in schema if name not in found]
    if missing:
        raise ValueError(f"no column {', '.join(map(repr, missing))} in the file "
                         f"(it has {', '.join(found)})")
    return frame.select(_parsed(name, found[name], dtype) for name, dtype in schema.items())


def _parsed(name: str, found: pl.DataType, wanted: pl.DataType) -> pl.Expr:
    column = pl.col(name)
    if found == pl.String and wanted == pl.Date:
        return column.str.to_date()
    if found == pl.String and isinstance(wanted, pl.Datetime):
        return column.str.to_datetime(time_unit="us")
    return column


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class FileWriter:
    """Frames of one schema written to ``path`` as they come, in its extension's format.

    The rows go to a temporary file in the same folder; :meth:`close` gives it
    ``path``'s name (replacing a file there), :meth:`discard` removes it. A
    ``with`` block closes on success and discards on an exception. An output
    that received no rows is still written, with its columns.

    Raises ValueError if the extension is unknown or the folder does not exist.
    """

    def __init__(self, path: str | os.PathLike[str], schema: pl.Schema) -> None:
        self.path = pathlib.Path(path)
        self.format = file_format(self.path)
        self.schema = pl.Schema(schema)
        self.rows = 0
        folder = self.path.parent
        if not folder.is_dir():
            raise ValueError(f"folder {str(folder)!r} does not exist")
        # Not mkstemp: its file is private to the user (0600), the output should not be.
        self._temporary = folder / f".{self.path.name}.{os.getpid()}.{id(self):x}.partial"
        self._file: IO[bytes] = open(self._temporary, "wb")
        self._arrow_schema: pa.Schema = pl.DataFrame(schema=self.schema).to_arrow().schema
        self._writer: Any = None
        if self.format == "parquet":
            self._writer = pa_parquet.ParquetWriter(self._file, self._arrow_schema)
        elif self.format == "ipc":
            self._writer = pa_ipc.new_file(self._file, self._arrow_schema)

    def write(self, frame: pl.DataFrame) -> None:
        """Append ``frame``'s rows (its columns in the writer's order)."""
        if frame.columns != list(self.schema):
            frame = frame.select(self.schema.names())
        if self.format == "csv":
            frame.write_csv(self._file, include_header=self.rows == 0)
        elif self.format == "ndjson":
            frame.write_ndjson(self._file)
        else:
            table = frame.to_arrow()
            if table.schema != self._arrow_schema:
                table = table.cast(self._arrow_schema)
            self._writer.write_table(table)
        self.rows += frame.height

    def close(self) -> None:
        """Finish the file and give it its name."""
        if self._file.closed:
            return
        if self.format == "csv" and self.rows == 0:  # a header, as Polars writes for no rows
            pl.DataFrame(schema=self.schema).write_csv(self._file)
        if self._writer is not None:
            self._writer.close()
        self._file.close()
        os.replace(self._temporary, self.path)

    def discard(self) -> None:
        """Drop what was written; ``path`` is left as it was."""
        if self._file.closed:
            return
        if self._writer is not None:
            try:  # else its finalizer would write its footer to the closed file
                self._writer.close()
            except (OSError, pa.ArrowException):
                pass
        self._file.close()
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> FileWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.discard()
