"""Small HTML pieces for the notebook reprs (``_repr_html_``) of the database,
its definitions and sinks: escaped text, a table, a titled block.

Plain HTML with a few inline styles, so it reads the same in Jupyter, VS Code
and a static render of the notebook; nothing here needs IPython.

>>> html = table(["name", "rows"], [["a<b", 1_234]])
>>> html.startswith("<table"), "a&lt;b" in html, 'right;padding:1px 8px">1,234</td>' in html
(True, True, True)
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Iterable, Sequence

__all__ = ["block", "cell_text", "escape", "table"]

_CELL = "padding:1px 8px"


def escape(text: object) -> str:
    """``text`` as HTML text."""
    return html.escape(str(text))


def cell_text(value: object) -> str:
    """A value as a table shows it: counts with thousands separators, times to
    the millisecond, the ends of event time as ``-`` (none yet) and ``closed``."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, dt.datetime):
        if value == dt.datetime.min:
            return "-"
        if value == dt.datetime.max:
            return "closed"
        return f"{value:%Y-%m-%d %H:%M:%S.%f}"[:-3]
    return str(value)


def table(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """An HTML table; numbers are right-aligned."""
    head = "".join(f'<th style="text-align:left;{_CELL}">{escape(c)}</th>' for c in columns)
    body = []
    for row in rows:
        cells = []
        for value in row:
            align = "right" if isinstance(value, (int, float)) and not isinstance(
                value, bool) else "left"
            cells.append(f'<td style="text-align:{align};{_CELL}">{escape(cell_text(value))}</td>')
        body.append(f"<tr>{''.join(cells)}</tr>")
    return (f'<table style="border-collapse:collapse;margin:2px 0"><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(body)}</tbody></table>")


def block(title: str, parts: Iterable[str], note: str = "") -> str:
    """A titled block of HTML ``parts`` (already HTML); ``note`` is plain text
    after the title."""
    note_html = f' <span style="color:#666">{escape(note)}</span>' if note else ""
    return (f'<div class="laminar-polars"><div><b>{escape(title)}</b>{note_html}</div>'
            f"{''.join(parts)}</div>")
