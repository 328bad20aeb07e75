"""The worker's side of global rate limits (``@app.task(rate_limit="20/s")``).

Before a limited task's message starts (before its ``started`` write), the worker asks
the status store for a start (:meth:`~taskq.stores.rate_base.StartLimits.take_start`),
which every worker on every host shares. What it does with the answer:

- **now**: the message starts as any other.
- **a slot within** :data:`PARK_LIMIT` **(about a second)**: the slot is taken and the
  message parked on a timer (``loop.call_later``: no runner, no thread, no polling is
  held meanwhile); when the timer fires the message goes to the *head* of the inbox
  and starts without asking again.
- **later than that**: nothing is taken. The message is published again with a delay
  until its turn (the store keeps a line of the calls told to come back, one spacing
  apart), through the broker's delay queues (confirmed, with its ``priority``), and
  the delivery acked only once that publish is confirmed; when it comes back it asks
  again, and finds its slot free unless new calls took it meanwhile.

  Why not hold it: a message held unacked counts towards RabbitMQ's
  ``consumer_timeout`` (30 minutes, after which the broker closes the channel and
  requeues everything on it), and occupies a prefetch slot of the task's queue. Why
  not requeue it: it would be delivered again at once, a busy loop through the broker.
  A task whose record is already final (cancelled while it waited) is not delayed: it
  goes on to the runner, whose refused ``started`` write acks it without running.

A parked message never waits past the share of ``consumer_timeout`` the worker keeps
for every delivery (the wait plus the task's time limit must fit). A task without a
limit costs one dict lookup: no store call.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TypeVar

from taskq.errors import BrokerError, MalformedMessage, StoreError
from taskq.execution import STORE_RETRY_PAUSE
from taskq.logs import get_logger
from taskq.message import TaskMessage
from taskq.settle import Outcome, settle
from taskq.tracing import trace_headers

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.brokers.base import Delivery
    from taskq.task import Task

#: The longest a worker holds a message whose start slot it has taken, in seconds.
#: A wait any longer is spent in the broker's delay queues instead.
PARK_LIMIT = 1.0

log = get_logger("taskq.worker")

T = TypeVar("T")

#: What the worker's inbox holds: a delivery and when it arrived (monotonic seconds).
Arrival = tuple["Delivery", float]


class Inbox(asyncio.Queue[T]):
    """The worker's queue of deliveries not started yet, with one addition: a parked
    message whose slot has come puts itself first, ahead of those that arrived while
    it waited (they have no slot yet)."""

    _queue: deque[T]  # asyncio.Queue's storage, made by its _init as for its subclasses

    def put_first(self, item: T) -> None:
        self.put_nowait(item)  # wakes a waiting runner, counts the item
        self._queue.rotate(1)  # and moves it from the tail to the head


class Throttle:
    """Admits the deliveries of rate-limited tasks for one worker (see the module)."""

    def __init__(
        self,
        app: TaskQueue,
        tasks: Iterable[Task[Any, Any]],
        inbox: Inbox[Arrival | None],
        *,
        ack_deadline_share: float,
    ) -> None:
        self.app = app
        #: The limited tasks of this worker by name: the one lookup every delivery pays.
        self.limited = {task.name: task for task in tasks if task.rate_limit is not None}
        self._inbox = inbox
        self._deadline = app.consumer_timeout * ack_deadline_share
        #: Parked deliveries, with their timers and arrival times.
        self._parked: dict[Delivery, tuple[asyncio.TimerHandle, float]] = {}
        #: Deliveries whose slot is taken and has come: they start without asking again.
        self._admitted: set[Delivery] = set()

    async def admit(self, delivery: Delivery, arrived: float) -> bool:
        """Whether ``delivery`` (of a limited task) starts now. ``False``: this took
        care of it (parked, delayed, or requeued), and the runner goes on to the next."""
        if delivery in self._admitted:
            self._admitted.discard(delivery)
            return True
        task = self.limited[delivery.task]
        assert task.rate_limit is not None
        task_log = log.bind(task_id=delivery.correlation_id, task=task.name, queue=delivery.queue)
        # Parked past this, the delivery could not finish before consumer_timeout.
        budget = self._deadline - (time.monotonic() - arrived) - task.time_limit
        try:
            wait = await self.app.store.take_start(
                task.name, task.rate_limit, max_wait=max(0.0, min(PARK_LIMIT, budget))
            )
        except StoreError as exc:
            return await self._give_back(delivery, "status store unavailable", exc, task_log)
        if wait == 0:
            return True
        if wait > 0:
            self._park(delivery, arrived, wait)
            task_log.debug("rate limited; start slot taken", start_in=round(wait, 3))
            return False
        return await self._delay(delivery, task, -wait, task_log)

    def _park(self, delivery: Delivery, arrived: float, wait: float) -> None:
        timer = asyncio.get_running_loop().call_later(wait, self._unpark, delivery)
        self._parked[delivery] = (timer, arrived)

    def _unpark(self, delivery: Delivery) -> None:
        parked = self._parked.pop(delivery, None)
        if parked is not None:
            self._admitted.add(delivery)
            self._inbox.put_first((delivery, parked[1]))

    def unpark_all(self) -> None:
        """Put every parked delivery in the inbox now (the worker is stopping and gives
        back what has not started; their slots are lost, never exceeded)."""
        for delivery, (timer, arrived) in list(self._parked.items()):
            timer.cancel()
            self._inbox.put_nowait((delivery, arrived))
        self._parked.clear()
        self._admitted.clear()

    async def _delay(
        self, delivery: Delivery, task: Task[Any, Any], wait: float, task_log: Any
    ) -> bool:
        """Publish the message again to come back in ``wait`` seconds, then ack this
        delivery; ``True`` when it should go on to the runner instead."""
        try:
            message = TaskMessage.decode(delivery.body, correlation_id=delivery.correlation_id)
        except MalformedMessage:
            return True  # the runner dead-letters it, with the reason; it never starts
        task_log = task_log.bind(task_id=message.id)
        try:
            record = await self.app.store.get(message.id)
        except StoreError as exc:
            return await self._give_back(delivery, "status store unavailable", exc, task_log)
        if record is not None and record.finished:
            return True  # cancelled (or done) meanwhile: refused at its start, never run
        try:
            await self.app.broker.publish(
                task.queue,
                delivery.body,
                task_id=message.id,
                delay=wait,
                priority=delivery.priority,
                headers=trace_headers(delivery.headers),
            )
        except BrokerError as exc:
            return await self._give_back(delivery, "could not delay it", exc, task_log)
        task_log.debug("rate limited; delayed until its next slot", retry_in=round(wait, 3))
        await settle(self.app.broker, delivery, Outcome.ack(), task_log)
        return False

    async def _give_back(
        self, delivery: Delivery, reason: str, exc: Exception, task_log: Any
    ) -> bool:
        """Requeue after a pause, so an outage does not become a hot redelivery loop."""
        task_log.error(f"rate limited task not admitted: {reason}; requeueing", error=str(exc))
        await asyncio.sleep(STORE_RETRY_PAUSE)
        await settle(self.app.broker, delivery, Outcome.requeue(reason), task_log)
        return False
