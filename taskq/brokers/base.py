"""The broker contract: what taskq needs from a message broker, and nothing more.

Two implementations pass one contract suite (``tests/contract/test_broker_contract.py``):
:class:`~taskq.brokers.memory.MemoryBroker`, in-process, and
:class:`~taskq.brokers.amqp.AmqpBroker`, RabbitMQ through aio-pika. The worker and the
app speak only to this interface, so the memory broker exercises the real worker path
(acks, requeues, redelivery, dead letters) instead of running tasks inline.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from taskq.brokers.inspection import DeadLetter, PrepareRequeue, QueueInfo
from taskq.errors import PublishError
from taskq.topology import QueueSpec, QueueType, Topology, delay_units

if TYPE_CHECKING:
    from taskq.brokers.amqp_management import ManagementApi

H = TypeVar("H", bound=Callable[..., Any])

__all__ = [
    "PUBLISH_WINDOW",
    "Broker",
    "Consumer",
    "ControlHandler",
    "DeadLetter",
    "Delivery",
    "DeliveryHandler",
    "NONBLOCKING",
    "Outgoing",
    "PrepareRequeue",
    "QueueInfo",
    "nonblocking",
]


class Delivery(ABC):
    """One message handed to a consumer. The worker settles it exactly once, with
    :meth:`ack` or :meth:`requeue`; a delivery left unsettled when its consumer closes
    goes back to its queue and is delivered again, with ``redelivered`` set."""

    __slots__ = (
        "body",
        "correlation_id",
        "delivery_count",
        "headers",
        "message_id",
        "priority",
        "queue",
        "redelivered",
        "routing_key",
        "task",
    )

    def __init__(
        self,
        *,
        body: bytes,
        task: str,
        queue: str,
        routing_key: str,
        redelivered: bool = False,
        headers: Mapping[str, Any] | None = None,
        correlation_id: str | None = None,
        message_id: str | None = None,
        delivery_count: int | None = None,
        priority: int = 0,
    ) -> None:
        self.body = body
        #: The task whose queue this came from (may differ from the body's ``task``).
        self.task = task
        self.queue = queue
        self.routing_key = routing_key
        #: "Maybe seen before": set on every delivery after the first.
        self.redelivered = redelivered
        self.headers: Mapping[str, Any] = headers or {}
        self.correlation_id = correlation_id
        self.message_id = message_id
        #: Earlier deliveries of this message, where the queue counts them (quorum
        #: queues' ``x-delivery-count``); ``None`` where it does not.
        self.delivery_count = delivery_count
        #: The message's priority as published (AMQP's ``priority`` property; 0 when
        #: it has none): a retry or a dead letter is published again with it.
        self.priority = priority

    @abstractmethod
    async def ack(self) -> None:
        """Remove the message for good. On a consumer that is already closed this does
        nothing: the broker has put the message back and will deliver it again."""

    @abstractmethod
    async def requeue(self) -> None:
        """Give the message back to its queue, to be delivered again (never dropped)."""


#: Called for each delivery. Several calls may run at once, up to the consumer's
#: prefetch of unsettled deliveries; it should hand the delivery on and return.
DeliveryHandler = Callable[[Delivery], Awaitable[None]]

#: The attribute :func:`nonblocking` sets.
NONBLOCKING = "__taskq_nonblocking__"


def nonblocking(handler: H) -> H:
    """Mark a :data:`DeliveryHandler` that never waits: it hands the delivery on (a
    ``put_nowait``) and returns without suspending. A broker may then await it right
    where it reads the delivery instead of starting a task for each (the worker's
    handler; RabbitMQ: ~10% of a worker's CPU per task, see
    :func:`taskq.brokers.amqp_consumer.deliver_inline`); its calls do not overlap. Put
    it on the function (a method's marker is read through its bound method)."""
    setattr(handler, NONBLOCKING, True)
    return handler


class Consumer(ABC):
    """A running subscription of one worker to its task queues."""

    @abstractmethod
    async def cancel(self) -> None:
        """Stop new deliveries. Deliveries already handed out stay unsettled and can
        still be acked or requeued. Idempotent."""

    @abstractmethod
    async def close(self) -> None:
        """Stop for good: every delivery still unsettled goes back to its queue.
        Idempotent; implies :meth:`cancel`."""


#: Called with the body of each control message a worker receives.
ControlHandler = Callable[[bytes], Awaitable[None]]


#: A message for :meth:`Broker.publish_many`: ``(task_id, body)``, or with the headers to
#: send it with, ``(task_id, body, headers)``.
Outgoing = tuple[str, bytes] | tuple[str, bytes, Mapping[str, str]]

#: The most messages :meth:`Broker.publish_many` has awaiting their confirm at once: a
#: batch of any size is published in windows of this many, so memory stays bounded.
PUBLISH_WINDOW = 1000


class Broker(ABC):
    """Publishes task messages with confirms, consumes them with manual settlement, and
    keeps a dead-letter queue. Every name comes from :attr:`topology`."""

    #: Where the broker lives, password masked: safe to log.
    display_url: str

    def __init__(self, topology: Topology, *, publish_timeout: float = 10.0) -> None:
        self.topology = topology
        self.publish_timeout = publish_timeout

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url} exchange={self.topology.exchange!r}>"

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` each time a lost connection of this broker is back (the
        ``taskq_broker_reconnects_total`` metric). An in-process broker never loses
        one: by default nothing is kept."""
        del callback

    def quorum_priority_levels(self) -> int | None:
        """How many priority levels this broker's quorum queues have; ``None`` when they
        have none (RabbitMQ 3.x, where only classic queues take ``x-max-priority``, and
        this default). Read once connected."""
        return None

    def declared_queue_type(self, spec: QueueSpec) -> QueueType:
        """The type a task queue is declared with: ``spec.queue_type``, except that a
        priority task's quorum queue is classic where quorum queues have no priorities
        (a classic queue is not replicated: the README weighs that trade-off)."""
        if (
            spec.max_priority is not None
            and spec.queue_type == "quorum"
            and self.quorum_priority_levels() is None
        ):
            return "classic"
        return spec.queue_type

    def queue_arguments(self, spec: QueueSpec) -> dict[str, Any]:
        """The arguments a task queue is declared with, from :attr:`topology`: the one
        place both the publishing and the consuming side take them from, so the two
        never differ (a 406 otherwise)."""
        return self.topology.queue_arguments(self.declared_queue_type(spec), spec.max_priority)

    @abstractmethod
    async def connect(self) -> None:
        """Connect and declare the exchange and the dead-letter exchange and queue.
        Idempotent. Raises :class:`~taskq.errors.BrokerConnectionError`."""

    @abstractmethod
    async def close(self) -> None:
        """Close every consumer (their unsettled deliveries are requeued), then the
        connections. Idempotent."""

    @abstractmethod
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
        """Publish a task message with routing key ``queue.task`` and return once the
        broker confirmed it. ``headers``: message headers to send with it (the trace
        context of :mod:`taskq.tracing`); ``None`` sends none.

        ``delay`` > 0 seconds (rounded to :data:`~taskq.topology.DELAY_UNIT`): the
        message waits that long *in the broker* (nothing is held in this process, so
        it survives this client), then reaches the task's queue like any other; the
        confirm means it is in the first delay queue. Delays never hold one another
        up. ``delay <= 0``: delivered at once. Above
        :data:`~taskq.topology.MAX_DELAY` raises
        :class:`~taskq.errors.ConfigurationError`, before anything is published.

        The message is persistent, ``application/json``, ``correlation_id=task_id``
        and carries a fresh ``message_id``; ``priority`` > 0 goes in AMQP's own
        ``priority`` property (a priority queue delivers higher ones first, FIFO within
        a level, and keeps it through a delay; 0 sets no property at all). The
        task's queue and binding are declared first, once per connection, so a message
        published before any worker started is kept. The publish is mandatory: an
        unroutable message (its queue deleted behind our back) re-declares the queue
        once and retries, then raises.

        Raises :class:`~taskq.errors.PublishError` when not confirmed (returned,
        nacked, timed out after ``publish_timeout``, connection lost) and
        :class:`~taskq.errors.QueueMismatch` when the queue exists with other
        arguments.
        """

    async def publish_many(
        self,
        queue: QueueSpec,
        messages: Sequence[Outgoing],
        *,
        delay: float = 0.0,
        priority: int = 0,
    ) -> list[BaseException | None]:
        """Publish each ``(task_id, body)`` (or ``(task_id, body, headers)``) as
        :meth:`publish` does, with their confirms
        awaited together (pipelined: up to :data:`PUBLISH_WINDOW` in flight) instead of
        one confirm round trip each; return each message's outcome, in order: ``None``
        once confirmed, else its :class:`~taskq.errors.PublishError` (a failure of one
        leaves the others as they went).

        Raises, with nothing published, what :meth:`publish` raises before it
        publishes: a delay too long, :class:`~taskq.errors.QueueMismatch`, a broker
        that cannot be reached (:class:`~taskq.errors.BrokerError`). A returned
        (unroutable) message re-declares its queue once and is retried, as in
        :meth:`publish`. Messages that reach the queue keep their order.

        This default publishes one after another, which is what an in-process broker
        does anyway; a broker with round trips overrides it."""
        delay_units(delay)  # refused before anything is published
        outcomes: list[BaseException | None] = []
        for message in messages:
            task_id, body = message[0], message[1]
            try:
                if len(message) == 3:
                    await self.publish(
                        queue,
                        body,
                        task_id=task_id,
                        delay=delay,
                        priority=priority,
                        headers=message[2],
                    )
                else:  # as before headers existed: a publish overridden without them works
                    await self.publish(queue, body, task_id=task_id, delay=delay, priority=priority)
            except PublishError as exc:
                outcomes.append(exc)
            else:
                outcomes.append(None)
        return outcomes

    @abstractmethod
    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Publish ``delivery`` to the dead-letter exchange, confirmed, with its routing
        key, headers and properties kept and ``x-taskq-reason: reason`` and
        ``x-taskq-queue`` added. Does not settle ``delivery``: the caller acks it once
        this returns. Raises :class:`~taskq.errors.PublishError`."""

    @abstractmethod
    async def consume(
        self, queues: Sequence[QueueSpec], handler: DeliveryHandler, *, prefetch: int
    ) -> Consumer:
        """Declare and bind each queue, then deliver their messages to ``handler`` with
        at most ``prefetch`` unsettled at a time per queue (AMQP ``basic.qos`` counts
        per consumer, and quorum queues refuse a global count). Each call is a
        consumer of its own (its own channel on AMQP), on a connection apart from the
        publishing one."""

    @abstractmethod
    async def publish_control(self, body: bytes) -> None:
        """Send a control message (``cancel`` of a running task) to every worker of
        this app listening now: fanout, confirmed, not persistent, not mandatory (no
        worker listening is no error: the status store carries what must last).
        Raises :class:`~taskq.errors.PublishError` when not confirmed."""

    @abstractmethod
    async def consume_control(self, worker_id: str, handler: ControlHandler) -> Consumer:
        """Deliver every control message published from now on to ``handler``, through
        a queue of this worker's own (exclusive, auto-delete: it goes with the worker,
        and comes back with a reconnect), on the consuming connection."""

    @abstractmethod
    async def publish_broadcast(
        self, task: str, body: bytes, *, task_id: str, required: bool = True
    ) -> bool:
        """Publish a call of broadcast task ``task`` to every worker consuming it now
        (:meth:`consume_broadcast`), confirmed and mandatory like :meth:`publish`, with
        the same properties; return whether it reached at least one worker's queue.
        A worker that is not consuming at this moment never gets it. Reaching none
        raises :class:`~taskq.errors.PublishError` unless ``required=False`` (then
        ``False``). On AMQP: routing key ``task`` on the topic exchange, an
        exchange-to-exchange binding to the fanout ``<exchange>.broadcast.<task>``
        (declared first, once per connection), one queue per worker behind it."""

    @abstractmethod
    async def consume_broadcast(
        self,
        tasks: Sequence[str],
        worker_id: str,
        handler: DeliveryHandler,
        *,
        prefetch: int,
    ) -> Consumer:
        """Deliver every call of the broadcast ``tasks`` published from now on to
        ``handler``, through a queue per task of this worker's own (exclusive,
        auto-delete: it goes with the worker, so a worker that is down misses the
        calls published meanwhile), settled like any delivery. Declares each task's
        fanout exchange and its binding from the task exchange, again after a
        reconnect (on AMQP: through a robust channel, on the consuming connection)."""

    @abstractmethod
    async def publish_scheduler_heartbeat(self, body: bytes) -> None:
        """Put a scheduler's heartbeat into the scheduler queue (topology's
        ``scheduler_queue``), where only the active scheduler receives it: not
        persistent, dropped when no scheduler consumes. See :mod:`taskq.schedules.leader`."""

    @abstractmethod
    async def consume_scheduler(
        self, handler: ControlHandler, *, lost: Callable[[], None] | None = None
    ) -> Consumer:
        """Join the schedulers' line on the scheduler queue: its messages go to one
        consumer at a time (the oldest live one; RabbitMQ's single active consumer), so
        ``handler`` is called only while this one is the active scheduler. Nothing says
        when that starts: messages arrive. ``lost`` is called when this consumer lost
        its place (its channel or connection closed); after a reconnect it queues again,
        at the back of the line."""

    @abstractmethod
    async def dead_letters(self, limit: int = 100, *, task: str | None = None) -> list[DeadLetter]:
        """Up to ``limit`` dead letters (of ``task`` only, if given), oldest first,
        left in the queue."""

    @abstractmethod
    async def requeue_dead(
        self,
        *,
        task: str | None = None,
        ids: Sequence[str] = (),
        prepare: PrepareRequeue | None = None,
    ) -> list[DeadLetter]:
        """Publish dead letters back to their task queues and remove them from the
        dead-letter queue; return those requeued. Which: those of ``task`` and, with
        ``ids``, of those task ids; all when neither is given. A letter with no task id
        or no task name to route by stays where it is.

        Each goes through :meth:`publish` (confirmed, mandatory, persistent, the task
        queue declared first) as a fresh message: the body as it was, the task id as
        ``correlation_id``, its priority, no headers (the dead-letter ones dropped).
        ``prepare`` runs first (default: the task's existing queue, or a new quorum
        one). A letter leaves the dead-letter queue only once its publish is
        confirmed; if ``prepare`` or the publish raises, it stays there with every
        letter not yet requeued, and the error is raised. Requeueing is at least once:
        a connection lost between the confirm and the removal leaves the letter in
        both places.
        """

    @abstractmethod
    async def purge_dead(self) -> int:
        """Delete every dead letter; return how many there were."""

    @abstractmethod
    async def queue_info(self, task: str) -> QueueInfo | None:
        """Ready messages and consumers of a task's queue; ``None`` if it does not exist."""

    @abstractmethod
    async def dead_queue_info(self) -> QueueInfo | None:
        """The same of the dead-letter queue; ``None`` if it does not exist."""

    def management_api(self, management_url: str | None = None) -> ManagementApi | None:
        """The broker's management HTTP API (RabbitMQ's), which alone knows unacked
        counts, at ``management_url`` or beside the broker; ``None`` for a broker that
        has none (its :meth:`queue_info` then tells what it can)."""
        return None

    @abstractmethod
    async def destroy(self, tasks: Iterable[str]) -> None:
        """Delete the queues of ``tasks``, the dead-letter queue, both exchanges and
        every delay level (with the delayed messages waiting there): everything this
        topology declared. For tests and benchmarks that clean up."""
