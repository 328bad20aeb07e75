"""Lifecycle events on RabbitMQ: the ``taskq.events`` side of :mod:`taskq.events`.

Published without publisher confirms on a connection of their own, opened on first use;
subscribers get an exclusive, auto-delete queue each, bound with their pattern.
"""

from __future__ import annotations

import asyncio

import aio_pika
from aio_pika.abc import (
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
    AbstractRobustExchange,
    ExchangeType,
)

from taskq.brokers.amqp import AmqpBroker
from taskq.events import EVENTS_EXCHANGE, EventChannel, EventHandler, Subscription, TaskEvent
from taskq.logs import get_logger

log = get_logger(__name__)


class _AmqpSubscription(Subscription):
    def __init__(self, queue: AbstractQueue, tag: str) -> None:
        self.queue, self.tag = queue, tag

    async def close(self) -> None:
        await self.queue.cancel(self.tag)
        await self.queue.channel.close()


class AmqpEvents(EventChannel):
    """``taskq.events`` on RabbitMQ, through one connection of its own (opened on first
    use), so a slow event never queues behind, or ahead of, a task's confirmed publish.
    Subscribers get an exclusive, auto-delete queue bound with their pattern."""

    def __init__(self, broker: AmqpBroker) -> None:
        self.broker = broker
        self._opening: asyncio.Task[_Opened] | None = None

    async def _open(self) -> _Opened:
        opening = self._opening
        if opening is None or (opening.done() and _failed(opening)):
            opening = self._opening = asyncio.create_task(self._connect())
            opening.add_done_callback(_failed)  # retrieved, even if no one waits any more
        # Shielded: an emit's timeout must not cancel connect_robust half-way, which
        # would leave its reconnect task running with no connection to close it by.
        return await asyncio.shield(opening)

    async def _connect(self) -> _Opened:
        connection = await self.broker.open_connection("events")
        try:
            channel = await connection.channel(publisher_confirms=False)
            exchange = await channel.declare_exchange(
                EVENTS_EXCHANGE, ExchangeType.TOPIC, durable=True
            )
        except BaseException:
            await connection.close()
            raise
        return connection, exchange

    async def publish(self, event: TaskEvent) -> None:
        _, exchange = await self._open()
        message = aio_pika.Message(
            event.encode(),
            content_type="application/json",
            message_id=event.task_id,
            delivery_mode=aio_pika.DeliveryMode.NOT_PERSISTENT,
        )
        # Not mandatory: with no one listening, RabbitMQ drops it instead of returning it.
        await exchange.publish(message, routing_key=event.routing_key, mandatory=False)

    async def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        connection, _ = await self._open()
        channel = await connection.channel()
        exchange = await channel.declare_exchange(EVENTS_EXCHANGE, ExchangeType.TOPIC, durable=True)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        await queue.bind(exchange, routing_key=pattern)

        async def on_message(message: AbstractIncomingMessage) -> None:
            try:
                event = TaskEvent.decode(message.body)
            except ValueError as exc:
                log.debug("not an event; skipped", error=str(exc))
                return
            handler(event)

        tag = await queue.consume(on_message, no_ack=True)
        return _AmqpSubscription(queue, tag)

    async def close(self) -> None:
        opening, self._opening = self._opening, None
        if opening is None:
            return
        try:
            connection, _ = await opening
        except Exception:  # never connected: nothing to close
            return
        await connection.close()


_Opened = tuple[AbstractRobustConnection, AbstractRobustExchange]


def _failed(task: asyncio.Task[_Opened]) -> bool:
    """Whether a finished open failed (its error retrieved, so asyncio does not log it)."""
    return task.cancelled() or task.exception() is not None
