"""Control messages on RabbitMQ: a fanout exchange ``<exchange>.control`` and one
exclusive, auto-delete queue per worker bound to it (seed 002's fanout shape).

Best effort by design: the status store records a cancel before any control message is
sent, so a worker that misses one (down, reconnecting) still never starts the task
again; the message only interrupts a task that is running now. So the queue is
consumed without acks and the messages are not persistent.

The queue is named after the worker (not server-named): aio-pika's robust channel
declares it again after a reconnect under the same name, which RabbitMQ refuses for
``amq.gen-*`` names.
"""

from __future__ import annotations

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)

from taskq.brokers.base import Consumer, ControlHandler
from taskq.logs import get_logger
from taskq.topology import Topology

log = get_logger(__name__)

#: Milliseconds a control message may wait in a worker's queue: a cancel older than
#: this is about a task that has ended one way or another.
CONTROL_TTL_MS = 60_000


class AmqpControlConsumer(Consumer):
    def __init__(self, channel: AbstractRobustChannel, queue: AbstractQueue, tag: str) -> None:
        self.channel, self.queue, self.tag = channel, queue, tag
        self.closed = False

    async def cancel(self) -> None:
        if not self.closed and not self.channel.is_closed:
            await self.queue.cancel(self.tag)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if not self.channel.is_closed:
            await self.channel.close()


async def declare_control(channel: AbstractChannel, topology: Topology) -> AbstractExchange:
    """The control exchange, declared once per channel (a robust one replays it)."""
    return await channel.declare_exchange(
        topology.control_exchange, ExchangeType.FANOUT, durable=True
    )


async def publish_control(exchange: AbstractExchange, body: bytes) -> None:
    """Publish to every worker's control queue: confirmed on a confirm channel, not
    mandatory (no worker listening is no error)."""
    message = aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=DeliveryMode.NOT_PERSISTENT,
        expiration=CONTROL_TTL_MS / 1000,
    )
    await exchange.publish(message, routing_key="", mandatory=False)


async def consume_control(
    connection: AbstractRobustConnection,
    topology: Topology,
    worker_id: str,
    handler: ControlHandler,
) -> AmqpControlConsumer:
    channel = await connection.channel()
    try:
        exchange = await declare_control(channel, topology)
        queue = await channel.declare_queue(
            topology.control_queue(worker_id), exclusive=True, auto_delete=True
        )
        await queue.bind(exchange, "")

        async def deliver(message: AbstractIncomingMessage) -> None:
            try:
                await handler(message.body)
            except Exception:
                log.exception("control message handler failed", worker=worker_id)

        tag = await queue.consume(deliver, no_ack=True)
    except BaseException:
        await channel.close()
        raise
    return AmqpControlConsumer(channel, queue, tag)
