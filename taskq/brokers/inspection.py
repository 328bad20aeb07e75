"""What a broker tells an operator: a dead letter as it lies in the dead-letter queue,
and a queue's counts. Part of the broker contract (:mod:`taskq.brokers.base`
re-exports them), kept apart from the publishing and consuming half of it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from taskq.topology import QueueSpec


@dataclass(frozen=True)
class DeadLetter:
    """A message in the dead-letter queue, as the broker holds it, with what an
    operator asks of it read out (``taskq.brokers.dead`` says from where)."""

    body: bytes
    routing_key: str
    reason: str
    queue: str | None = None
    correlation_id: str | None = None
    message_id: str | None = None
    headers: Mapping[str, Any] = field(default_factory=dict)
    #: The task's id; ``None`` when neither the body nor the properties hold one.
    task_id: str | None = None
    #: The task's name, which a requeue routes by; ``None`` when it cannot be told.
    task: str | None = None
    #: When it was dead-lettered (UTC), where the message says.
    dead_at: datetime | None = None
    #: The priority it was published with: a requeue publishes it with this again.
    priority: int = 0


#: Called before a dead letter is published again, with its task id and task name;
#: returns the queue to publish it to. The app resets the task's status here.
PrepareRequeue = Callable[[str, str], Awaitable[QueueSpec]]


@dataclass(frozen=True)
class QueueInfo:
    """A queue's counts as the broker reports them at one moment."""

    name: str
    #: Messages waiting to be delivered.
    ready: int
    consumers: int
    #: Messages delivered and not yet settled; ``None`` where the broker cannot tell
    #: (an AMQP passive declare reports only ``ready`` and ``consumers``).
    unacked: int | None = None
    #: ``quorum``, ``classic``...; with the two below, only RabbitMQ's management API
    #: tells (a passive declare does not): ``None`` where it is not asked.
    queue_type: str | None = None
    #: The node serving the queue: a quorum queue's leader, a classic queue's node.
    leader: str | None = None
    #: The nodes holding a member (replica) of a quorum queue.
    members: tuple[str, ...] | None = None
