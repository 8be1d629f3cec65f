"""The database: `LaminarDB` and `open`, the layer users talk to.

One concern per module:

- `database`: `LaminarDB`, its catalog, running pieces and lifecycle.
- `statements`: runs parsed SQL statements through the runtime.
- `definitions`: catalog definitions from Python arguments, and as plans see them.
- `wiring`: builds a source's ring and a sink's feed, and connects readers.
- `introspection`: SHOW, DESCRIBE, metrics and topology.
- `query`: ``db.query``, one SELECT over views and tables at one barrier.

Examples
--------
>>> import laminar_polars as lp
>>> from laminar_polars.db import LaminarDB
>>> with lp.open() as db:
...     isinstance(db, LaminarDB)
True
"""

from __future__ import annotations

from laminar_polars.db.database import LaminarDB, open

__all__ = ["LaminarDB", "open"]
