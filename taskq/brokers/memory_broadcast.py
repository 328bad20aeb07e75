"""Broadcast tasks on the embedded broker: the fanouts of :mod:`taskq.brokers.amqp_broadcast`
in memory. Each :class:`~taskq.worker.Worker` of the process that serves a broadcast
task has a queue of its own for it, made when it starts consuming and gone when it
stops (exclusive and auto-delete, as on RabbitMQ); a call is copied into every queue
there is at that moment, so every worker runs it once and a worker started later
never sees it.

The queues are ordinary :class:`~taskq.brokers.memory_queue.MemoryQueue` objects with
no topic binding: the broker's delivery, settlement and requeue rules apply to them
unchanged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from taskq.brokers.base import DeliveryHandler
from taskq.brokers.memory_queue import MemoryQueue, Message
from taskq.errors import PublishError

if TYPE_CHECKING:
    from taskq.brokers.memory import MemoryBroker, MemoryConsumer


class MemoryFanouts:
    """Per broadcast task, the worker queues bound to its fanout now."""

    def __init__(self, broker: MemoryBroker) -> None:
        self._broker = broker
        #: Task name -> queue name -> queue.
        self.queues: dict[str, dict[str, MemoryQueue]] = {}

    def publish(self, task: str, body: bytes, *, task_id: str, required: bool) -> bool:
        targets = list(self.queues.get(task, {}).values())
        if not targets:
            if required:
                raise PublishError(
                    f"broadcast {task_id} of task {task!r} reached no worker: none is "
                    "consuming it now (send with required=False to allow that)",
                    task_id=task_id,
                )
            return False
        for queue in targets:
            queue.messages.append(Message(body, task, {}, task_id, uuid.uuid4().hex))
            self._broker._dispatch(queue)
        return True

    def consume(
        self, tasks: Sequence[str], worker_id: str, handler: DeliveryHandler, *, prefetch: int
    ) -> MemoryConsumer:
        from taskq.brokers.memory import MemoryConsumer, _Subscription

        consumer = MemoryConsumer(self._broker, handler)
        # Auto-delete: its queues go with its subscriptions.
        consumer.on_cancel = lambda: self._delete(consumer)
        topology = self._broker.topology
        for task in tasks:
            name = topology.broadcast_queue(task, worker_id)
            queue = MemoryQueue(name, "classic", {})
            self.queues.setdefault(task, {})[name] = queue
            subscription = _Subscription(consumer, queue, task, prefetch)
            consumer.subscriptions.append(subscription)
            queue.subscriptions.append(subscription)
        self._broker._consumers.add(consumer)
        return consumer

    def _delete(self, consumer: MemoryConsumer) -> None:
        for subscription in consumer.subscriptions:
            queues = self.queues.get(subscription.task, {})
            if queues.get(subscription.queue.name) is subscription.queue:
                del queues[subscription.queue.name]
            if not queues:
                self.queues.pop(subscription.task, None)
