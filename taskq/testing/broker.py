"""The embedded broker of a test: the memory broker, plus what a test wants to look at.

:class:`TestingBroker` is :class:`~taskq.brokers.memory.MemoryBroker` unchanged (the
real worker path: queues, acks, retries, dead letters), with two additions:

- every task message it publishes (broadcast calls included) is remembered, in order
  (:attr:`TestingBroker.sent`), which :func:`taskq.testing.sent_tasks` reads;
- delayed messages (``countdown``/``eta``, retry backoffs) can be released at once
  (:meth:`TestingBroker.release_delayed`), which ``taskq_drain(app,
  include_delayed=True)`` does instead of waiting out their delay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskq.brokers.memory import MemoryBroker
from taskq.brokers.memory_queue import Message
from taskq.message import TaskMessage
from taskq.topology import QueueSpec


@dataclass(frozen=True)
class SentTask:
    """A task message as it was published: its task id, task name and arguments (as
    JSON carries them: a ``uuid.UUID`` argument is a string here, as a worker gets it
    before validation)."""

    id: str
    task: str
    args: list[Any]
    kwargs: dict[str, Any]
    #: Seconds it was held back (``countdown``/``eta``); 0 for a task sent to run now.
    delay: float = 0.0
    #: AMQP priority it was published with (0: none).
    priority: int = 0
    #: ``{"id": ..., "path": ...}`` for a workflow step, else ``None``.
    workflow: dict[str, str] | None = field(default=None, compare=False)


class TestingBroker(MemoryBroker):
    """A :class:`MemoryBroker` that records what is published and can release delays."""

    __test__ = False  # a class named Test* that is not a test class (pytest collection)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: Every task published, in order; once per task id (a retry, or a dead letter
        #: requeued, publishes the same task again and is not a new entry).
        self.sent: list[SentTask] = []
        self._seen: set[str] = set()
        #: The message behind each delay timer, to release it early.
        self._held: dict[asyncio.TimerHandle, Message] = {}

    async def publish(
        self,
        queue: QueueSpec,
        body: bytes,
        *,
        task_id: str,
        delay: float = 0.0,
        priority: int = 0,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        await super().publish(
            queue, body, task_id=task_id, delay=delay, priority=priority, headers=headers
        )
        self._record(body, task_id, delay=delay, priority=priority)

    async def publish_broadcast(
        self, task: str, body: bytes, *, task_id: str, required: bool = True
    ) -> bool:
        reached = await super().publish_broadcast(task, body, task_id=task_id, required=required)
        self._record(body, task_id)
        return reached

    def _record(self, body: bytes, task_id: str, *, delay: float = 0.0, priority: int = 0) -> None:
        if task_id in self._seen:
            return
        self._seen.add(task_id)
        message = TaskMessage.decode(body)
        self.sent.append(
            SentTask(
                message.id,
                message.task,
                message.args,
                message.kwargs,
                delay=delay,
                priority=priority,
                workflow=message.workflow,
            )
        )

    def _hold(self, message: Message, units: float) -> None:
        before = set(self._delayed)
        super()._hold(message, units)
        for handle in self._delayed - before:
            self._held[handle] = message

    @property
    def delayed(self) -> int:
        """Messages waiting out a delay now."""
        return len(self._delayed)

    def release_delayed(self) -> int:
        """Let every delayed message come due now, in the order they were delayed (as
        if their time had passed); returns how many. They reach their queues on the
        next turn of the event loop, as a timer's would."""
        released = 0
        for handle, message in list(self._held.items()):
            del self._held[handle]
            if handle not in self._delayed:  # came due already
                continue
            handle.cancel()
            self._delayed.discard(handle)
            super()._hold(message, 0)  # routed by the memory broker's own due()
            released += 1
        return released

    def forget_delayed(self) -> None:
        """Drop the delay timers (at the end of a test: its event loop goes with it)."""
        for handle in self._delayed:
            handle.cancel()
        self._delayed.clear()
        self._held.clear()
