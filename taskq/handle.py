"""TaskHandle: what a sender keeps of a task, to ask how it went."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from taskq.errors import ResultTimeout, TaskCancelled, TaskFailed
from taskq.status import TaskState, TaskStatus

if TYPE_CHECKING:
    from taskq.app import TaskQueue


class TaskHandle:
    """A task id and name with the app to look them up. Cheap: make one for any id with
    ``app.handle(task_id)``, e.g. an id an API client sent back."""

    __slots__ = ("_app", "id", "name")

    def __init__(self, app: TaskQueue, task_id: str, name: str | None = None) -> None:
        self._app = app
        self.id = task_id
        self.name = name

    def __repr__(self) -> str:
        return f"<TaskHandle {self.name or '?'} {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and (other._app, other.id) == (self._app, self.id)

    def __hash__(self) -> int:
        return hash(self.id)

    async def status(self) -> TaskStatus | None:
        """The store's record of this task; ``None`` while it has none."""
        # The store only: a status can be read while the broker is down.
        await self._app.store.connect()
        return await self._app.store.get(self.id)

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the outcome and return the task's return value (as JSON carried it).

        Waits also while the store has no record yet (a worker may create it). Raises
        :class:`~taskq.errors.TaskFailed` if the task failed,
        :class:`~taskq.errors.TaskCancelled` if it was cancelled, and
        :class:`~taskq.errors.ResultTimeout` (a ``TimeoutError``) if it has not finished
        within ``timeout`` seconds; ``None`` waits for as long as it takes.
        """
        await self._app.store.connect()
        limit = math.inf if timeout is None else timeout
        events = self._app.events
        if events is not None and events.waker is not None:  # woken by events
            status = await events.waker.wait(self.id, self.status, limit)
        else:
            status = await self._app.store.wait(self.id, limit)
        if status is None or not status.finished:
            raise ResultTimeout(self.id, limit, status)
        if status.state is TaskState.FAILED:
            raise TaskFailed(status)
        if status.state is TaskState.CANCELLED:
            raise TaskCancelled(status)
        return status.result

    async def cancel(self) -> bool:
        """Cancel this task: see :meth:`TaskQueue.cancel`."""
        return await self._app.cancel(self.id)
