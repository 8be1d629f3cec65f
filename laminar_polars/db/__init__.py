"""The database: `LaminarDB` and `open`, the layer users talk to.

One concern per module:

- `database`: `LaminarDB`, the documented facade; each method turns what
  users write into definitions and plans and hands them to the runtime.
- `runtime`: `Runtime`, the running pieces (rings, view graphs, sinks,
  scheduler), their lock and lifecycle, with public add / drop methods per
  definition; ``db.runtime`` gives it to tools and tests.
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
