"""What a status store keeps for periodic schedules: the last tick sent of each, the
store half of :mod:`taskq.schedules`. Abstract methods every
:class:`~taskq.stores.base.StatusStore` implements (memory:
:mod:`taskq.stores.memory_schedules`, Redis: :mod:`taskq.stores.redis_schedules`), held
to one contract suite (``tests/contract/test_schedule_store_contract.py``).

Only ever moved forward, atomically: two schedulers that briefly both believe they are
active (a failover) may record ticks in any order, and the later tick wins. It never
expires: it must outlive any outage of the schedulers, which is when it is read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime


class ScheduleRecords(ABC):
    @abstractmethod
    async def last_tick(self, schedule: str) -> datetime | None:
        """The latest tick recorded for ``schedule`` (UTC), ``None`` if none was."""

    @abstractmethod
    async def record_tick(self, schedule: str, tick: datetime) -> bool:
        """Record ``tick`` (an aware datetime, whole seconds) as sent, unless a later
        one is recorded already; return whether it was written."""
