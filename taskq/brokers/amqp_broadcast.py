"""Broadcast tasks on RabbitMQ (seed 002's shape): topic exchange -> exchange-to-exchange
binding -> fanout -> one queue per worker.

    <exchange>  --(routing key = task name)-->  <exchange>.broadcast.<task>   fanout
                                                  |-> <exchange>.broadcast.<task>.<worker A>
                                                  |-> <exchange>.broadcast.<task>.<worker B>

A broadcast task has no ordinary queue: the only queues behind its routing key are the
workers' own, exclusive and auto-delete, so they exist exactly while their worker's
connection does. A mandatory publish that reaches none of them is returned by
RabbitMQ (NO_ROUTE, also through the exchange-to-exchange binding; measured on
3.10.8): that is how a sender learns that no worker is listening.

Everything is declared through robust channels, so aio-pika declares the fanout, the
e2e binding and the worker's queue with its binding again after a reconnect. The queue
is named after the worker (not server-named), as the control queue is: aio-pika's
replay of an ``amq.gen-*`` name would be refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import aio_pika
import aiormq.exceptions
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractRobustChannel,
    AbstractRobustConnection,
    DeliveryMode,
    ExchangeType,
)

from taskq.brokers.amqp_consumer import AmqpConsumer
from taskq.brokers.amqp_publish import message_id
from taskq.brokers.base import DeliveryHandler
from taskq.errors import PublishError
from taskq.logs import get_logger
from taskq.message import CONTENT_TYPE
from taskq.topology import Topology

log = get_logger(__name__)


async def declare_fanout(
    channel: AbstractChannel, topology: Topology, task: str, task_exchange: AbstractExchange
) -> AbstractExchange:
    """The task's fanout exchange and its binding from the task exchange by the task's
    name (a robust channel records both and declares them again after a reconnect)."""
    fanout = await channel.declare_exchange(
        topology.broadcast_exchange(task), ExchangeType.FANOUT, durable=True
    )
    await fanout.bind(task_exchange, routing_key=task)
    return fanout


class BroadcastDeclarations:
    """The fanouts a publishing channel declared: once per task and connection."""

    def __init__(self) -> None:
        self.declared: set[str] = set()
        self._lock = asyncio.Lock()

    async def ensure(
        self,
        channel: AbstractRobustChannel,
        topology: Topology,
        task: str,
        task_exchange: AbstractExchange,
    ) -> None:
        if task in self.declared:
            return
        async with self._lock:
            if task not in self.declared:
                await declare_fanout(channel, topology, task, task_exchange)
                self.declared.add(task)


async def publish_broadcast(
    channel: AbstractRobustChannel,
    task_exchange: AbstractExchange,
    declarations: BroadcastDeclarations,
    topology: Topology,
    task: str,
    body: bytes,
    *,
    task_id: str,
    required: bool,
    timeout: float,
) -> bool:
    """One confirmed, mandatory publish; ``False`` (or :class:`PublishError` when
    ``required``) if RabbitMQ returned it: no worker queue is bound right now.

    No second try after a return, unlike a task's publish: declaring the fanout again
    would not bring back the workers' bindings, only the workers do."""
    await declarations.ensure(channel, topology, task, task_exchange)
    message = aio_pika.Message(
        body,
        delivery_mode=DeliveryMode.PERSISTENT,
        content_type=CONTENT_TYPE,
        correlation_id=task_id,
        message_id=message_id(),
    )
    try:
        await task_exchange.publish(message, task, mandatory=True, timeout=timeout)
    except aiormq.exceptions.PublishError:
        # Declared again on the next broadcast, in case the fanout was deleted.
        declarations.declared.discard(task)
        if required:
            raise PublishError(
                f"broadcast {task_id} of task {task!r} reached no worker: none is "
                "consuming it now (send with required=False to allow that)",
                task_id=task_id,
            ) from None
        log.info("broadcast reached no worker", task_id=task_id, task=task)
        return False
    return True


async def consume_broadcast(
    connection: AbstractRobustConnection,
    topology: Topology,
    tasks: Sequence[str],
    worker_id: str,
    handler: DeliveryHandler,
    *,
    prefetch: int,
    timeout: float,
    on_close: Callable[[AmqpConsumer], None],
) -> AmqpConsumer:
    """A channel of its own with this worker's queue of each task, consumed with manual
    acks through :class:`AmqpConsumer` (its reconnect and settle rules)."""
    channel = await connection.channel()
    consumer = AmqpConsumer(channel, handler, on_close=on_close, timeout=timeout)
    try:
        await channel.set_qos(prefetch_count=prefetch)
        task_exchange = await channel.declare_exchange(
            topology.exchange, ExchangeType.TOPIC, durable=True
        )
        for task in tasks:
            fanout = await declare_fanout(channel, topology, task, task_exchange)
            queue = await channel.declare_queue(
                topology.broadcast_queue(task, worker_id), exclusive=True, auto_delete=True
            )
            # Bound by the task's binding keys, as AmqpConsumer binds a queue again if
            # the broker cancels it: a fanout exchange ignores the keys.
            await queue.bind(fanout, task)
            await consumer.subscribe(queue, fanout, task=task, counted=False)
    except BaseException:
        await consumer.close()
        raise
    log.info("consuming broadcasts", tasks=list(tasks), worker=worker_id, prefetch=prefetch)
    return consumer
