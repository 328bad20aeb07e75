"""Global rate limits: ``@app.task(rate_limit="20/s")``, at most that many starts per
period across every worker process and host, counted in the status store.

This module parses the limit and says how far apart starts must be; the store keeps
the schedule (:meth:`taskq.stores.rate_base.StartLimits.take_start`, one atomic call
that every worker on every host shares) and the worker asks it before each start
(:mod:`taskq.throttle`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from taskq.errors import ConfigurationError

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_FORMAT = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")

#: Seconds of clock error between hosts (and between a granted start and its
#: ``started_at``) that :attr:`RateLimit.spacing` absorbs.
CLOCK_SLACK = 0.1


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``count`` starts per ``period`` seconds."""

    count: int
    period: float

    @property
    def interval(self) -> float:
        """Seconds between two starts at the limit's even pace."""
        return self.period / self.count

    @property
    def spacing(self) -> float:
        """Seconds the store puts between two starts (a GCRA emission interval with no
        burst allowance). The even pace ``period / count`` lets count + 1 starts touch
        both ends of one period; it is stretched where needed so that count + 2 starts
        span at least ``period + CLOCK_SLACK``. Why: starts are stamped by several
        hosts' clocks, a moment after the store granted them, and with that much error
        no window of one period may show more than count + 1 starts.

        ``20/s`` -> 0.0524 s (19.1 starts a second); ``100/m`` -> 0.6 s (the slack is
        far smaller than the pace there)."""
        return max(self.period / self.count, (self.period + CLOCK_SLACK) / (self.count + 1))

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
