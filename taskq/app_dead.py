"""Dead letters on :class:`~taskq.app.TaskQueue`: listed, requeued (their records reset
first) and purged, through :class:`~taskq.brokers.Broker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq.brokers import Broker, DeadLetter
from taskq.errors import ConfigurationError
from taskq.stores import StatusStore
from taskq.task import Task
from taskq.topology import QueueSpec, QueueType


class AppDeadLetters:
    """Mixed into :class:`~taskq.app.TaskQueue`, which sets and defines these."""

    broker: Broker
    store: StatusStore
    tasks: dict[str, Task[Any, Any]]
    queue_type: QueueType

    if TYPE_CHECKING:  # defined by TaskQueue

        async def connect(self) -> None: ...

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(self, task: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` messages of the dead-letter queue (of ``task`` only, if
        given), oldest first, each with its ``task_id``, ``task``, ``reason`` and
        ``dead_at``. Looking leaves them where they are; it needs the broker only."""
        if limit < 0:
            raise ConfigurationError(f"limit must be 0 or more, not {limit!r}")
        return await self.broker.dead_letters(limit, task=task)

    async def requeue_dead(
        self, task: str | None = None, ids: Sequence[str] = ()
    ) -> list[DeadLetter]:
        """Run dead-lettered tasks again: those of ``task``, or with these task ``ids``,
        or all of them; returns the dead letters requeued.

        For each, the status is reset first (``queued``, no attempt, no error: a
        ``failed`` task may run again only this way), then the message is published
        back to its task's queue; the dead letter goes once that is confirmed. If the
        store or the publish fails, the error is raised and the letters not yet
        requeued stay dead (a task whose reset went through but not its publish reads
        ``queued`` until it is requeued again). A dead letter without a task id or a
        task name to route by stays, whatever is asked.

        >>> await app.requeue_dead(task="emails.send")
        >>> await app.requeue_dead(ids=[handle.id])
        """
        await self.connect()

        async def prepare(task_id: str, name: str) -> QueueSpec:
            await self.store.reset(task_id, name)
            registered = self.tasks.get(name)
            if registered is not None:
                return registered.queue
            return QueueSpec(name, queue_type=self.queue_type, authoritative=False)

        return await self.broker.requeue_dead(task=task, ids=ids, prepare=prepare)

    async def purge_dead(self) -> int:
        """Delete every dead letter for good; returns how many. Their tasks stay
        ``failed`` in the status store."""
        return await self.broker.purge_dead()
