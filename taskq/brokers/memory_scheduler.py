"""The schedulers' lease in the embedded broker: RabbitMQ's single active consumer on
the scheduler queue, in-process (see :mod:`taskq.brokers.amqp_scheduler`).

Consumers stand in line in the order they joined; every heartbeat goes to the first,
the active one; when it leaves (closed, as a dead connection would be), the next one
starts receiving. Heartbeats published while nobody consumes wait, as in the queue, at
most :data:`MAX_WAITING` of them and none older than :data:`WAITING_TTL` seconds.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from taskq.brokers.base import ControlHandler
from taskq.brokers.memory_handlers import HandlerConsumer
from taskq.logs import get_logger

log = get_logger(__name__)

#: As the queue's ``x-max-length`` (oldest dropped) and ``x-message-ttl``.
MAX_WAITING = 100
WAITING_TTL = 10.0


class MemorySchedulerConsumer(HandlerConsumer):
    log = log
    failure = "scheduler heartbeat handler failed"

    def __init__(
        self, line: SchedulerLine, handler: ControlHandler, lost: Callable[[], None] | None
    ) -> None:
        super().__init__(handler)
        self._line = line
        self.lost = lost

    async def cancel(self) -> None:
        self._line.leave(self)

    async def close(self) -> None:
        self._line.leave(self)


class SchedulerLine:
    """The scheduler queue: its consumers in line and its waiting heartbeats."""

    def __init__(self) -> None:
        self.consumers: list[MemorySchedulerConsumer] = []
        self.waiting: deque[tuple[float, bytes]] = deque(maxlen=MAX_WAITING)

    def join(
        self, handler: ControlHandler, lost: Callable[[], None] | None
    ) -> MemorySchedulerConsumer:
        consumer = MemorySchedulerConsumer(self, handler, lost)
        self.consumers.append(consumer)
        self._flush()
        return consumer

    def leave(self, consumer: MemorySchedulerConsumer) -> None:
        if consumer in self.consumers:
            self.consumers.remove(consumer)
            if consumer.lost is not None:
                consumer.lost()
            self._flush()

    def publish(self, body: bytes) -> None:
        self.waiting.append((time.monotonic() + WAITING_TTL, body))
        self._flush()

    def close(self) -> None:
        for consumer in list(self.consumers):
            self.leave(consumer)

    def _flush(self) -> None:
        if not self.consumers:
            return
        active = self.consumers[0]
        now = time.monotonic()
        while self.waiting:
            expires, body = self.waiting.popleft()
            if expires > now:
                active.deliver(body)
