"""Control messages, broadcast tasks and the schedulers' lease on
:class:`~taskq.brokers.amqp.AmqpBroker`: its connections and time box around
:mod:`taskq.brokers.amqp_control`, :mod:`taskq.brokers.amqp_broadcast` and
:mod:`taskq.brokers.amqp_scheduler`, which hold the AMQP side of each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from taskq.brokers.amqp_broadcast import consume_broadcast, publish_broadcast
from taskq.brokers.amqp_consumer import AmqpConsumer
from taskq.brokers.amqp_control import (
    AmqpControlConsumer,
    consume_control,
    declare_control,
    publish_control,
)
from taskq.brokers.amqp_core import AmqpCore
from taskq.brokers.amqp_scheduler import (
    AmqpSchedulerConsumer,
    consume_scheduler,
    publish_heartbeat,
)
from taskq.brokers.base import ControlHandler, DeliveryHandler


class AmqpSideChannels(AmqpCore):
    """Mixed into :class:`~taskq.brokers.amqp.AmqpBroker`."""

    # -- control messages (taskq.brokers.amqp_control) -----------------------------

    async def publish_control(self, body: bytes) -> None:
        await self.connect()
        async with self._calling(publishing=True):
            publisher = await self._ready_publisher()
            if publisher.control is None:
                publisher.control = await declare_control(publisher.channel, self.topology)
            await publish_control(publisher.control, body)

    async def consume_control(self, worker_id: str, handler: ControlHandler) -> AmqpControlConsumer:
        await self.connect()
        connection = await self._consuming_connection()
        async with self._calling():
            consumer = await consume_control(connection, self.topology, worker_id, handler)
        self._control_consumers.add(consumer)
        return consumer

    # -- broadcast tasks (taskq.brokers.amqp_broadcast) -----------------------------

    async def publish_broadcast(
        self, task: str, body: bytes, *, task_id: str, required: bool = True
    ) -> bool:
        await self.connect()
        async with self._calling(publishing=True, task_id=task_id):
            publisher = await self._ready_publisher()
            return await publish_broadcast(
                publisher.channel,
                publisher.exchange,
                publisher.broadcasts,
                self.topology,
                task,
                body,
                task_id=task_id,
                required=required,
                timeout=self.publish_timeout,
            )

    async def consume_broadcast(
        self, tasks: Sequence[str], worker_id: str, handler: DeliveryHandler, *, prefetch: int
    ) -> AmqpConsumer:
        await self.connect()
        connection = await self._consuming_connection()
        async with self._calling():
            consumer = await consume_broadcast(
                connection,
                self.topology,
                tasks,
                worker_id,
                handler,
                prefetch=prefetch,
                timeout=self.publish_timeout,
                on_close=self._consumers.discard,
            )
        self._consumers.add(consumer)
        return consumer

    # -- schedulers' lease (taskq.brokers.amqp_scheduler) ----------------------------

    async def publish_scheduler_heartbeat(self, body: bytes) -> None:
        await self.connect()
        async with self._calling(publishing=True):
            await publish_heartbeat((await self._ready_publisher()).channel, self.topology, body)

    async def consume_scheduler(
        self, handler: ControlHandler, *, lost: Callable[[], None] | None = None
    ) -> AmqpSchedulerConsumer:
        await self.connect()
        connection = await self._consuming_connection()
        async with self._calling():
            consumer = await consume_scheduler(connection, self.topology, handler, lost)
        self._control_consumers.add(consumer)
        return consumer
