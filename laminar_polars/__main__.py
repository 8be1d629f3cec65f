"""``python -m laminar_polars``: the ``laminar-polars`` command (see `laminar_polars.cli`)."""

import sys

from laminar_polars.cli import main

sys.exit(main())
