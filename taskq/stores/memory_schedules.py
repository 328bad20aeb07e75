"""The schedule records of :class:`~taskq.stores.memory.MemoryStore` (see
:mod:`taskq.stores.schedule_base`): one dict under a lock."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from taskq.stores.schedule_base import ScheduleRecords

_CREATING = threading.Lock()


class MemorySchedules(ScheduleRecords):
    """Mixed into :class:`~taskq.stores.memory.MemoryStore`."""

    _ticks: dict[str, datetime] | None = None
    _ticks_lock: threading.Lock | None = None

    def _tick_state(self) -> tuple[dict[str, datetime], threading.Lock]:
        if self._ticks is None or self._ticks_lock is None:
            with _CREATING:  # two threads' first calls must share one state
                if self._ticks is None or self._ticks_lock is None:
                    self._ticks, self._ticks_lock = {}, threading.Lock()
        return self._ticks, self._ticks_lock

    async def last_tick(self, schedule: str) -> datetime | None:
        ticks, lock = self._tick_state()
        with lock:
            return ticks.get(schedule)

    async def record_tick(self, schedule: str, tick: datetime) -> bool:
        tick = tick.astimezone(UTC).replace(microsecond=0)
        ticks, lock = self._tick_state()
        with lock:
            known = ticks.get(schedule)
            if known is not None and known >= tick:
                return False
            ticks[schedule] = tick
            return True
