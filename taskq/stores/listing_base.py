"""Listing and counting the status store's records by filter: what the dashboard's
task pages and its bulk actions read (``taskq dashboard``, :mod:`taskq.dashboard`).

Abstract methods every :class:`~taskq.stores.base.StatusStore` implements (memory:
:mod:`taskq.stores.memory_listing`, Redis: :mod:`taskq.stores.redis_listing`), held to
one contract suite (``tests/contract/test_store_listing_contract.py``).

A record's *time* here is the latest step it records: ``finished_at``, else
``started_at``, else ``created_at``. "Every failed ``emails.send`` of the last hour" is
``TaskFilter(name="emails.send", state=TaskState.FAILED, since=now - 1 h)``. Like
:meth:`~taskq.stores.base.StatusStore.recent`, a store may look only at its latest
writes (Redis: its recent-tasks index). Nothing here is on a task's path: only
operators' pages call it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime

from taskq.status import TaskState, TaskStatus


@dataclass(frozen=True)
class TaskFilter:
    """Which records: every field given must match (``None``: any)."""

    #: The task's name, exactly.
    name: str | None = None
    state: TaskState | None = None
    #: Records whose time (see the module) is at or after this aware datetime.
    since: datetime | None = None
    #: A piece of the task id or of the task name (case-sensitive): the search box.
    text: str | None = None

    def matches(self, status: TaskStatus) -> bool:
        """The filter applied in Python, as the memory store does."""
        if self.name is not None and status.name != self.name:
            return False
        if self.state is not None and status.state != self.state:
            return False
        if self.text and self.text not in status.id and self.text not in status.name:
            return False
        if self.since is not None:
            moment = record_time(status)
            if moment is None or moment < self.since:
                return False
        return True


def record_time(status: TaskStatus) -> datetime | None:
    """A record's time: its latest recorded step."""
    return status.finished_at or status.started_at or status.created_at


class TaskListing(ABC):
    @abstractmethod
    async def find_tasks(self, where: TaskFilter, *, limit: int = 50) -> list[TaskStatus]:
        """Up to ``limit`` records matching ``where``, most recently written first."""

    @abstractmethod
    async def count_tasks(self, where: TaskFilter) -> dict[TaskState, int]:
        """How many records match ``where``, by state (every state present, 0 for none):
        the counts a bulk action shows before it runs, and the dashboard's totals."""
