"""Global rate limits: ``@app.task(rate_limit="20/s")``, at most that many starts per
period across every worker process and host, counted in the status store.

This module parses the limit; the store keeps the count (see
:meth:`taskq.stores.base.StatusStore`) and the worker asks it before each start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskq.errors import ConfigurationError

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FORMAT = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` starts per ``period`` seconds."""

    count: int
    period: float

    @property
    def interval(self) -> float:
        """Seconds between two starts at the limit's even pace."""
        return self.period / self.count

    def __str__(self) -> str:
        unit = next(u for u, seconds in _PERIODS.items() if seconds == self.period)
        return f"{self.count}/{unit}"


def parse_rate_limit(text: str | None, *, task: str) -> RateLimit | None:
    """``"20/s"``, ``"100/m"``, ``"5/h"`` -> :class:`RateLimit`; ``None`` -> ``None``.
    Anything else raises :class:`ConfigurationError` where the task is declared."""
    if text is None:
        return None
    match = _FORMAT.fullmatch(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise ConfigurationError(
            f"task {task!r}: rate_limit must be '<count>/<s|m|h>' with a count of at "
            f"least 1, e.g. '20/s', '100/m', not {text!r}"
        )
    return RateLimit(int(match.group(1)), _PERIODS[match.group(2)])
