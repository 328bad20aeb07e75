"""The filtered listing of :class:`~taskq.stores.memory.MemoryStore` (see
:mod:`taskq.stores.listing_base`): a walk over its records under its lock."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from taskq.status import TaskState, TaskStatus
from taskq.stores.listing_base import TaskFilter, TaskListing

if TYPE_CHECKING:
    from taskq.stores.memory import _Record


class MemoryListing(TaskListing):
    """Mixed into :class:`~taskq.stores.memory.MemoryStore`, whose dict of records is
    in write order (each write re-inserts its record at the end)."""

    _records: dict[str, _Record]
    _lock: threading.Lock

    if TYPE_CHECKING:

        def _purge(self) -> None: ...

    async def find_tasks(self, where: TaskFilter, *, limit: int = 50) -> list[TaskStatus]:
        found: list[TaskStatus] = []
        with self._lock:
            self._purge()
            for record in reversed(self._records.values()):
                if len(found) >= limit:
                    break
                if where.matches(record.status):
                    found.append(record.status.model_copy(deep=True))
        return found

    async def count_tasks(self, where: TaskFilter) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        with self._lock:
            self._purge()
            for record in self._records.values():
                if where.matches(record.status):
                    counts[record.status.state] += 1
        return counts
