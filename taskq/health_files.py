"""Health files without an event loop: touching one, and how stale one is.

The part of :mod:`taskq.health` the supervisor needs: it imports nothing but the
standard library, so ``taskq worker --processes N``'s supervisor stays small.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

#: Seconds between two touches of a health file.
DEFAULT_INTERVAL = 5.0

#: A health file not touched for this many intervals belongs to a wedged process.
STALE_INTERVALS = 6


def touch(path: str | os.PathLike[str]) -> None:
    """Create ``path`` or set its mtime to now."""
    Path(path).touch()


def age(path: str | os.PathLike[str], *, since: float) -> float | None:
    """Seconds since ``path`` was last touched; ``None`` if it was not touched since
    ``since`` (a ``time.time()``: when its process started, so a file left by the
    process before it does not count)."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return None if mtime < since else time.time() - mtime
