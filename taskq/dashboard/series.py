"""What the dashboard keeps between polls: whether each service answered, and the
rates of the lifecycle events in buckets over the last 15 minutes (the page's small
charts). Plain data, fed and read by :class:`~taskq.dashboard.live.Live`."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from taskq.status import utcnow

#: Width of one rate bucket, and how many are kept: 15 minutes.
BUCKET = 10
BUCKETS = 90
#: Rate series, from the events that feed them.
RATE_OF = {
    "queued": "published",
    "started": "started",
    "succeeded": "finished",
    "failed": "finished",
    "cancelled": "finished",
}


@dataclass
class Health:
    """Whether a service answered its last call, and since when it has not."""

    ok: bool | None = None
    error: str | None = None
    down_since: str | None = None

    def up(self) -> None:
        self.ok, self.error, self.down_since = True, None, None

    def down(self, exc: BaseException) -> None:
        if self.ok is not False:
            self.down_since = utcnow().isoformat()
        self.ok, self.error = False, f"{type(exc).__name__}: {exc}"


@dataclass
class Rates:
    """Events per :data:`BUCKET` seconds, per task and series, over the last 15 minutes."""

    #: (task, series) -> bucket number -> count
    counts: dict[tuple[str, str], dict[int, int]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, task: str, series: str, at: float) -> None:
        bucket = int(at // BUCKET)
        for key in ((task, series), ("*", series)):
            per = self.counts[key]
            per[bucket] = per.get(bucket, 0) + 1
            if len(per) > BUCKETS + 1:
                for old in sorted(per)[: len(per) - BUCKETS]:
                    del per[old]

    def series(self, task: str = "*", now: float | None = None) -> dict[str, Any]:
        """Per-second rates, oldest bucket first, for each series."""
        last = int((time.time() if now is None else now) // BUCKET)
        first = last - BUCKETS + 1
        out: dict[str, Any] = {"bucket": BUCKET, "start": first * BUCKET}
        for series in ("published", "started", "finished"):
            per = self.counts.get((task, series), {})
            out[series] = [per.get(b, 0) / BUCKET for b in range(first, last + 1)]
        return out
