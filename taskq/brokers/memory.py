"""An in-process broker that behaves like RabbitMQ, for tests and local development.

Not a shortcut that runs tasks inline: messages go through a topic exchange into
per-task FIFO queues, are delivered round-robin to consumers up to their prefetch, and
stay unsettled until the worker acks or requeues them; closing a consumer puts its
unsettled deliveries back. So the real :class:`~taskq.worker.Worker` path (acks,
requeues, redelivery, dead letters) runs against it, in one event loop, with no threads.

Where RabbitMQ 3.10's queue types differ, this follows the type (measured, see
``tests/contract/test_broker_contract.py``): a quorum queue counts deliveries
(``delivery_count`` 0, 1, ...) and puts a requeued message at its back; a classic queue
counts nothing (``None``) and puts it back at its head; a priority queue delivers the
highest priority first (the order: :mod:`taskq.brokers.memory_queue`). A delayed
message waits on a timer of its own, as it would in RabbitMQ's delay levels, then is
routed with the same bit-prefixed routing key.

    broker = MemoryBroker(Topology("shop"))
    await broker.publish(QueueSpec("emails.send"), body, task_id=task_id)
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from taskq.brokers.base import (
    Broker,
    Consumer,
    DeadLetter,
    Delivery,
    DeliveryHandler,
)
from taskq.brokers.dead import (
    dead_letter_headers,
    read_dead_letter,
)
from taskq.brokers.memory_broadcast import MemoryFanouts
from taskq.brokers.memory_inspect import MemoryInspection
from taskq.brokers.memory_queue import MemoryQueue, Message
from taskq.brokers.memory_scheduler import SchedulerLine
from taskq.brokers.memory_side_channels import MemoryControlConsumer, MemorySideChannels
from taskq.errors import PublishError, QueueMismatch
from taskq.logs import get_logger
from taskq.topology import (
    DELAY_UNIT,
    QueueSpec,
    Topology,
    delay_routing_key,
    delay_units,
    topic_matches,
)
from taskq.urls import MEMORY_URL

log = get_logger(__name__)

#: Seconds before a delayed message that no queue took when it came due is tried
#: again: RabbitMQ keeps such a message in its delay queue and retries after its dead
#: letter worker's confirm timeout (``dead_letter_worker_publisher_confirm_timeout``).
_UNROUTED_RETRY = 180.0


@dataclass(eq=False)
class _Subscription:
    """One consumer on one queue; like RabbitMQ's per-consumer ``basic.qos``, the
    prefetch applies to each queue of a ``consume()`` call."""

    consumer: MemoryConsumer
    queue: MemoryQueue
    task: str
    prefetch: int
    #: Unsettled deliveries, oldest first (a dict as an ordered set).
    unsettled: dict[MemoryDelivery, Message] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return self.prefetch == 0 or len(self.unsettled) < self.prefetch  # 0: no limit


class MemoryDelivery(Delivery):
    __slots__ = ("_broker", "_subscription")

    def __init__(self, broker: MemoryBroker, subscription: _Subscription, message: Message):
        super().__init__(
            body=message.body,
            task=subscription.task,
            queue=subscription.queue.name,
            routing_key=message.routing_key,
            redelivered=message.deliveries > 1,
            headers=dict(message.headers),
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            delivery_count=message.deliveries - 1 if subscription.queue.counts_deliveries else None,
            priority=message.priority,
        )
        self._broker = broker
        self._subscription = subscription

    async def ack(self) -> None:
        self._broker._settle(self, self._subscription, requeue=False)

    async def requeue(self) -> None:
        self._broker._settle(self, self._subscription, requeue=True)


class MemoryConsumer(Consumer):
    def __init__(self, broker: MemoryBroker, handler: DeliveryHandler) -> None:
        self._broker = broker
        self.handler = handler
        self.subscriptions: list[_Subscription] = []
        #: Handler calls in flight, referenced so they are not garbage collected.
        self.tasks: set[asyncio.Task[None]] = set()
        self.closed = False
        #: Called once its subscriptions are gone (a broadcast consumer's queues then go).
        self.on_cancel: Callable[[], None] | None = None

    async def cancel(self) -> None:
        self._broker._cancel(self)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._broker._cancel(self)
        self._broker._requeue_unsettled(self)
        current = asyncio.current_task()
        pending = [task for task in self.tasks if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


class MemoryBroker(MemoryInspection, MemorySideChannels, Broker):
    """A :class:`Broker` in this process's memory. Its queues outlive :meth:`close`, like
    a server's outlive a client: only :meth:`destroy` removes them."""

    display_url = MEMORY_URL

    def __init__(self, topology: Topology, *, publish_timeout: float = 10.0) -> None:
        super().__init__(topology, publish_timeout=publish_timeout)
        self._queues: dict[str, MemoryQueue] = {}
        #: The dead-letter queue; ``None`` until connect() declares the topology.
        self._dead: deque[DeadLetter] | None = None
        self._consumers: set[MemoryConsumer] = set()
        #: Queues "declared on this connection", as AmqpBroker remembers them.
        self._declared: set[QueueSpec] = set()
        #: The timers of delayed messages: the delay queues' contents, which outlive
        #: :meth:`close` like the queues do.
        self._delayed: set[asyncio.TimerHandle] = set()
        #: Workers' control queues (the control exchange's bindings).
        self._control: set[MemoryControlConsumer] = set()
        #: Broadcast tasks' fanouts and their worker queues.
        self._fanouts = MemoryFanouts(self)
        #: The scheduler queue and its consumers (taskq.brokers.memory_scheduler).
        self._schedulers = SchedulerLine()

    async def connect(self) -> None:
        self._declare_topology()

    def _declare_topology(self) -> deque[DeadLetter]:
        """The exchanges and the dead-letter queue; returns the latter."""
        if self._dead is None:
            self._dead = deque()
        return self._dead

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        self._control.clear()
        self._schedulers.close()
        self._declared.clear()

    # -- declarations -------------------------------------------------------------

    def _declare(self, spec: QueueSpec) -> MemoryQueue:
        name = self.topology.queue_name(spec.task)
        arguments = self.queue_arguments(spec)
        queue = self._queues.get(name)
        if queue is None:
            queue_type = self.declared_queue_type(spec)
            # As RabbitMQ: only a classic queue's x-max-priority makes a priority queue.
            levels = spec.max_priority if queue_type == "classic" else None
            queue = self._queues[name] = MemoryQueue(name, queue_type, arguments, levels)
        elif spec.authoritative and queue.arguments != arguments:
            raise QueueMismatch(name, _inequivalence(name, received=arguments, current=queue))
        queue.binding_keys.update(self.topology.binding_keys(spec.task))
        return queue

    # -- publishing ---------------------------------------------------------------

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
        units = delay_units(delay)  # a delay too long is refused before anything is sent
        await self.connect()
        if queue not in self._declared:
            self._declare(queue)
            self._declared.add(queue)
        sent = dict(headers) if headers else {}
        if units:
            routing_key = delay_routing_key(units, queue.task)  # as RabbitMQ delivers it
            self._hold(Message(body, routing_key, sent, task_id, uuid.uuid4().hex, priority), units)
            return
        message = Message(body, queue.task, sent, task_id, uuid.uuid4().hex, priority)
        if not self._route(message):
            # Unroutable: its queue went away behind our back. Declare it again, retry once.
            self._declare(queue)
            if not self._route(message):
                raise PublishError(
                    f"publish of task {task_id} was returned unroutable", task_id=task_id
                )

    def _hold(self, message: Message, units: float) -> None:
        """The delay levels: route ``message`` once ``units`` of delay have passed, each
        message on a timer of its own, so none waits behind another."""

        def due() -> None:
            self._delayed.discard(handle)
            if not self._route(message):
                log.warning(
                    "delayed message came due with no queue bound to take it; "
                    "kept and tried again later",
                    routing_key=message.routing_key,
                    correlation_id=message.correlation_id,
                )
                self._hold(message, _UNROUTED_RETRY / DELAY_UNIT)

        handle = asyncio.get_running_loop().call_later(units * DELAY_UNIT, due)
        self._delayed.add(handle)

    def _route(self, message: Message) -> bool:
        """The topic exchange: a copy of ``message`` into every queue bound to its key."""
        routed = False
        for queue in list(self._queues.values()):
            if any(topic_matches(key, message.routing_key) for key in queue.binding_keys):
                queue.messages.append(replace(message, headers=dict(message.headers)))
                self._dispatch(queue)
                routed = True
        return routed

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        self._declare_topology().append(
            read_dead_letter(
                self.topology,
                body=delivery.body,
                routing_key=delivery.routing_key,
                headers=dead_letter_headers(delivery.headers, reason=reason, queue=delivery.queue),
                correlation_id=delivery.correlation_id,
                message_id=uuid.uuid4().hex,
                priority=delivery.priority,
            )
        )

    # -- consuming ----------------------------------------------------------------

    async def consume(
        self, queues: Sequence[QueueSpec], handler: DeliveryHandler, *, prefetch: int
    ) -> MemoryConsumer:
        await self.connect()
        consumer = MemoryConsumer(self, handler)
        declared = [self._declare(spec) for spec in queues]  # all checked before any starts
        for spec, queue in zip(queues, declared, strict=True):
            subscription = _Subscription(consumer, queue, spec.task, prefetch)
            consumer.subscriptions.append(subscription)
            queue.subscriptions.append(subscription)
        self._consumers.add(consumer)
        for queue in declared:
            self._dispatch(queue)
        return consumer

    def _dispatch(self, queue: MemoryQueue) -> None:
        """Hand out ready messages, round-robin over subscriptions with room left."""
        while queue.messages:
            subscription = self._next_ready(queue)
            if subscription is None:
                return
            message = queue.messages.popleft()
            message.deliveries += 1
            delivery = MemoryDelivery(self, subscription, message)
            subscription.unsettled[delivery] = message
            consumer = subscription.consumer
            task = asyncio.get_running_loop().create_task(self._handle(consumer, delivery))
            consumer.tasks.add(task)
            task.add_done_callback(consumer.tasks.discard)

    @staticmethod
    def _next_ready(queue: MemoryQueue) -> _Subscription | None:
        count = len(queue.subscriptions)
        for step in range(count):
            subscription = queue.subscriptions[(queue.turn + step) % count]
            if subscription.ready:
                queue.turn = (queue.turn + step + 1) % count
                return subscription
        return None

    @staticmethod
    async def _handle(consumer: MemoryConsumer, delivery: Delivery) -> None:
        try:
            await consumer.handler(delivery)
        except Exception:
            # Left unsettled: it goes back to its queue when the consumer closes.
            log.exception(
                "delivery handler failed", queue=delivery.queue, message_id=delivery.message_id
            )

    def _settle(
        self, delivery: MemoryDelivery, subscription: _Subscription, *, requeue: bool
    ) -> None:
        message = subscription.unsettled.pop(delivery, None)
        if message is None:
            # Settled already, or its consumer closed and the message went back: the
            # same answer as an ack on a closed AMQP channel, nothing to do.
            log.info("delivery not settled: no longer held", queue=delivery.queue)
            return
        queue = subscription.queue
        if requeue:
            queue.put_back([message])
        self._dispatch(queue)

    def _cancel(self, consumer: MemoryConsumer) -> None:
        for subscription in consumer.subscriptions:
            if subscription in subscription.queue.subscriptions:
                subscription.queue.subscriptions.remove(subscription)
        if consumer.on_cancel is not None:
            consumer.on_cancel()

    def _requeue_unsettled(self, consumer: MemoryConsumer) -> None:
        self._consumers.discard(consumer)
        for subscription in consumer.subscriptions:
            subscription.queue.put_back(list(subscription.unsettled.values()))
            subscription.unsettled.clear()
            self._dispatch(subscription.queue)


def _inequivalence(name: str, *, received: dict[str, Any], current: MemoryQueue) -> str:
    """RabbitMQ's 406 text, naming the first argument that differs."""
    keys = sorted(received.keys() | current.arguments.keys())
    arg = next(k for k in keys if received.get(k) != current.arguments.get(k))
    return (
        f"inequivalent arg {arg!r} for queue {name!r}: received "
        f"{received.get(arg)!r} but current is {current.arguments.get(arg)!r}"
    )
