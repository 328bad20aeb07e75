"""The rate limit schedules of :class:`~taskq.stores.memory.MemoryStore` (see
:mod:`taskq.stores.rate_base`): per task, the next free slot and the end of the line,
under a lock, on the process's monotonic clock. Every worker that shares the store
object (the embedded broker runs them all in one process) shares the schedule."""

from __future__ import annotations

import threading
import time

from taskq.ratelimit import RateLimit
from taskq.stores.rate_base import StartLimits

_CREATING = threading.Lock()


class MemoryStartLimits(StartLimits):
    """Mixed into :class:`~taskq.stores.memory.MemoryStore`."""

    #: Per task: (next free slot, end of the line), monotonic seconds.
    _schedules: dict[str, tuple[float, float]] | None = None
    _rate_lock: threading.Lock | None = None

    def _rate_state(self) -> tuple[dict[str, tuple[float, float]], threading.Lock]:
        if self._schedules is None or self._rate_lock is None:
            with _CREATING:  # two threads' first calls must share one schedule
                if self._schedules is None or self._rate_lock is None:
                    self._rate_lock = threading.Lock()
                    self._schedules = {}
        return self._schedules, self._rate_lock

    async def take_start(self, key: str, limit: RateLimit, *, max_wait: float = 0.0) -> float:
        schedules, lock = self._rate_state()
        with lock:
            now = time.monotonic()
            next_free, line_end = schedules.get(key, (now, now))
            start = max(next_free, now)
            if start - now <= max_wait:
                schedules[key] = (start + limit.spacing, line_end)
                return start - now
            back = max(line_end, start)
            schedules[key] = (next_free, back + limit.spacing)
            return -(back - now)
