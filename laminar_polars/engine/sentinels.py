"""The watermark sentinels, as plain ints (the native ring's values).

Operators compare watermarks with these and need nothing else of the native
module: ``NO_WATERMARK`` before any event time was seen, ``CLOSED_WATERMARK``
once the input ended.
"""

from __future__ import annotations

__all__ = ["CLOSED_WATERMARK", "NO_WATERMARK"]

NO_WATERMARK = -(2**63)  # LP_NO_WATERMARK (INT64_MIN)
CLOSED_WATERMARK = 2**63 - 1  # LP_CLOSED_WATERMARK (INT64_MAX)
