"""Control messages, broadcast tasks and the schedulers' lease on
:class:`~taskq.brokers.memory.MemoryBroker`: the workers' control queues, and
delegations to :mod:`taskq.brokers.memory_broadcast` and
:mod:`taskq.brokers.memory_scheduler`, which hold the memory side of the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskq.brokers.base import Broker, ControlHandler, DeliveryHandler
from taskq.brokers.memory_broadcast import MemoryFanouts
from taskq.brokers.memory_handlers import HandlerConsumer
from taskq.brokers.memory_scheduler import MemorySchedulerConsumer, SchedulerLine
from taskq.logs import get_logger

if TYPE_CHECKING:
    from taskq.brokers.memory import MemoryConsumer

log = get_logger("taskq.brokers.memory")  # the broker's lines keep its logger name


class MemoryControlConsumer(HandlerConsumer):
    """A worker's control queue: gone once cancelled, as an auto-delete queue is."""

    log = log
    failure = "control message handler failed"

    def __init__(self, broker: MemorySideChannels, handler: ControlHandler) -> None:
        super().__init__(handler)
        self._broker = broker

    async def cancel(self) -> None:
        self._broker._control.discard(self)

    async def close(self) -> None:
        await self.cancel()


class MemorySideChannels(Broker):
    """Mixed into :class:`~taskq.brokers.memory.MemoryBroker`, which sets these."""

    _control: set[MemoryControlConsumer]
    _fanouts: MemoryFanouts
    _schedulers: SchedulerLine

    # -- control messages -----------------------------------------------------------

    async def publish_control(self, body: bytes) -> None:
        await self.connect()
        for consumer in list(self._control):
            consumer.deliver(body)

    async def consume_control(
        self, worker_id: str, handler: ControlHandler
    ) -> MemoryControlConsumer:
        await self.connect()
        consumer = MemoryControlConsumer(self, handler)
        self._control.add(consumer)
        return consumer

    # -- broadcast tasks (taskq.brokers.memory_broadcast) ----------------------------

    async def publish_broadcast(
        self, task: str, body: bytes, *, task_id: str, required: bool = True
    ) -> bool:
        await self.connect()
        return self._fanouts.publish(task, body, task_id=task_id, required=required)

    async def consume_broadcast(
        self, tasks: Sequence[str], worker_id: str, handler: DeliveryHandler, *, prefetch: int
    ) -> MemoryConsumer:
        await self.connect()
        return self._fanouts.consume(tasks, worker_id, handler, prefetch=prefetch)

    # -- schedulers' lease (taskq.brokers.memory_scheduler) ---------------------------

    async def publish_scheduler_heartbeat(self, body: bytes) -> None:
        await self.connect()
        self._schedulers.publish(body)

    async def consume_scheduler(
        self, handler: ControlHandler, *, lost: Callable[[], None] | None = None
    ) -> MemorySchedulerConsumer:
        await self.connect()
        return self._schedulers.join(handler, lost)
