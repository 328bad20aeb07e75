"""What the Broker contract tests share: the task queues they use, and a handler
that keeps every delivery (:class:`Inbox`) so a test awaits one instead of sleeping."""

from __future__ import annotations

import asyncio
import json

from taskq.brokers.base import Broker, Delivery
from taskq.topology import QueueSpec

EMAILS = QueueSpec("emails.send")
REPORTS = QueueSpec("reports.build")
#: Every task a test here may declare: the fixture destroys their queues.
TASKS = [EMAILS.task, REPORTS.task]
#: Long enough for a message in flight to arrive, when asserting that none does.
QUIET = 0.3


async def counts(broker: Broker, task: str, expected: tuple[int, int]) -> tuple[int, int]:
    """(ready, consumers) of a queue, polled briefly until they are ``expected``: a
    quorum queue updates its consumer count a moment after a consumer goes."""
    found = (-1, -1)
    for _ in range(50):
        info = await broker.queue_info(task)
        assert info is not None
        found = (info.ready, info.consumers)
        if found == expected:
            break
        await asyncio.sleep(0.05)
    return found


class Inbox:
    """A handler that keeps every delivery, to be awaited instead of slept for."""

    def __init__(self) -> None:
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        self._deliveries.put_nowait(delivery)

    async def get(self, timeout: float = 5.0) -> Delivery:
        return await asyncio.wait_for(self._deliveries.get(), timeout)

    async def take(self, count: int) -> list[Delivery]:
        return [await self.get() for _ in range(count)]

    async def assert_nothing_more(self) -> None:
        await asyncio.sleep(QUIET)
        assert self._deliveries.empty(), f"unexpected delivery: {self._deliveries.get_nowait()}"


def task_body(spec: QueueSpec, task_id: str) -> bytes:
    return json.dumps({"id": task_id, "task": spec.task, "args": [], "kwargs": {}}).encode()
