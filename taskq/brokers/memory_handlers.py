"""The embedded broker's consumers of bodies (a worker's control queue, a scheduler's
place in line): each body runs the consumer's handler in a task of its own, so a slow
or failing handler holds up neither the publisher nor the other consumers."""

from __future__ import annotations

import asyncio

from taskq.brokers.base import Consumer, ControlHandler
from taskq.logs import TaskqLogger


class HandlerConsumer(Consumer):
    """A consumer that hands each body to ``handler``; a handler's failure is logged
    on ``log`` as ``failure`` (each kind keeps its own logger and line)."""

    log: TaskqLogger
    failure: str

    def __init__(self, handler: ControlHandler) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()

    def deliver(self, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._handle(body))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _handle(self, body: bytes) -> None:
        try:
            await self.handler(body)
        except Exception:
            self.log.exception(self.failure)
