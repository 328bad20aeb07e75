"""The schedulers' lease on RabbitMQ: a queue ``<exchange>.scheduler`` with
``x-single-active-consumer`` that every scheduler consumes and publishes heartbeats into
(:mod:`taskq.schedules.leader` draws the conclusions).

RabbitMQ delivers the queue's messages to one consumer only, and moves to the next
consumer in line when that one's channel or connection closes (a process killed, a
connection lost). AMQP 0-9-1 has no frame saying "you are now the active consumer":
the only sign is that messages start to arrive. Hence the heartbeats.

Heartbeats are plain, not persistent, not mandatory, published through the default
exchange to the queue by name; the queue caps them by age and number (topology). The
consumer takes them without acks (nothing to redeliver: a heartbeat is worth its
arrival only), on a robust channel of the consuming connection, so aio-pika declares
and consumes again after a reconnect, at the back of the line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aio_pika
from aio_pika.abc import (
    AbstractChannel,
    AbstractIncomingMessage,
    AbstractRobustConnection,
    DeliveryMode,
)

from taskq.brokers.amqp_control import AmqpControlConsumer
from taskq.brokers.amqp_declare import declare_queue
from taskq.brokers.base import ControlHandler
from taskq.logs import get_logger
from taskq.topology import Topology

log = get_logger(__name__)

#: Seconds a heartbeat may wait in the queue, on top of the queue's own TTL: none
#: older is worth delivering.
HEARTBEAT_EXPIRATION = 10.0


class AmqpSchedulerConsumer(AmqpControlConsumer):
    """A scheduler's place in the scheduler queue's line: a consumer on a channel of
    its own, closed with it (as a worker's control consumer is)."""


async def publish_heartbeat(channel: AbstractChannel, topology: Topology, body: bytes) -> None:
    """Into the scheduler queue, confirmed on a confirm channel; dropped by the broker
    if the queue does not exist yet (no scheduler is consuming: nobody to tell)."""
    message = aio_pika.Message(
        body,
        content_type="application/json",
        delivery_mode=DeliveryMode.NOT_PERSISTENT,
        expiration=HEARTBEAT_EXPIRATION,
    )
    await channel.default_exchange.publish(
        message, routing_key=topology.scheduler_queue, mandatory=False
    )


async def consume_scheduler(
    connection: AbstractRobustConnection,
    topology: Topology,
    handler: ControlHandler,
    lost: Callable[[], None] | None,
) -> AmqpSchedulerConsumer:
    channel = await connection.channel()
    try:
        queue = await declare_queue(
            connection, channel, topology.scheduler_queue, topology.scheduler_queue_arguments()
        )

        async def deliver(message: AbstractIncomingMessage) -> None:
            try:
                await handler(message.body)
            except Exception:
                log.exception("scheduler heartbeat handler failed")

        tag = await queue.consume(deliver, no_ack=True)
    except BaseException:
        await channel.close()
        raise
    if lost is not None:
        # Called on every close of the channel underneath (a lost connection included):
        # whatever comes back after a reconnect is at the back of the line.
        def closed(*_: Any) -> None:
            lost()

        channel.close_callbacks.add(closed)
    return AmqpSchedulerConsumer(channel, queue, tag)
