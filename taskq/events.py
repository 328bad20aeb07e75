"""Lifecycle events: ``queued, started, retrying, succeeded, failed, cancelled``, as
they are recorded.

Off by default; on with ``TaskQueue(..., events=True)`` (or ``TASKQ_EVENTS=1``). Each
event is a small JSON object published to the durable topic exchange ``taskq.events``
(one for every app on a vhost; the body names the app's ``exchange``) with the routing
key ``<state>.<task name>``, so ``failed.#`` or ``*.emails.send`` select what to watch:

    {"task_id": "...", "task": "emails.send", "state": "failed", "attempt": 3,
     "time": "2026-11-24T01:02:03.456789+00:00", "exchange": "shop",
     "error_type": "SMTPError", "error_message": "...", "pid": 4242, "host": "web-1"}

Events are best-effort: the status store stays the truth. They are published without
publisher confirms, on a connection of their own, within :data:`EMIT_TIMEOUT`; one that
cannot go is dropped with a debug log, and never fails or holds up a task. With events
off the app holds no :class:`Events` at all: the hot path pays one ``is None`` test.

On the embedded ``memory://`` broker they are delivered in-process, to subscribers of
the same app (:meth:`Events.subscribe`).

    taskq events 'failed.#' --json      # tail them from a shell
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from taskq.logs import get_logger
from taskq.status import utcnow

if TYPE_CHECKING:
    from taskq.brokers import Broker
    from taskq.status import ErrorInfo, TaskStatus

log = get_logger(__name__)

#: The topic exchange every app publishes its events to.
EVENTS_EXCHANGE = "taskq.events"
#: The states an event reports, in the order a task can go through them.
EVENT_STATES = ("queued", "started", "retrying", "succeeded", "failed", "cancelled")
#: Seconds an event may take to go out before it is dropped.
EMIT_TIMEOUT = 0.5

_HOST = socket.gethostname()


@dataclass(frozen=True)
class TaskEvent:
    """One step of a task's life, as it travels."""

    task_id: str
    task: str
    #: One of :data:`EVENT_STATES`.
    state: str
    #: The attempt it belongs to (``None`` for ``queued``: none has started).
    attempt: int | None
    #: When it was recorded (UTC, ISO 8601).
    time: str
    #: The app's exchange: which deployment the task belongs to.
    exchange: str
    error_type: str | None = None
    error_message: str | None = None
    pid: int | None = None
    host: str | None = None
    #: A worker's heartbeat only (:mod:`taskq.heartbeat`): its tasks running now and
    #: its concurrency.
    running: int | None = None
    concurrency: int | None = None

    @property
    def routing_key(self) -> str:
        return f"{self.state}.{self.task}"

    def encode(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def decode(cls, body: bytes) -> TaskEvent:
        """Raises ``ValueError`` for a body that is not an event."""
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("an event is a JSON object")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"not an event: {exc}") from None

    def describe(self) -> str:
        """One line for people: time, state, task, id, attempt, error."""
        line = f"{self.time} {self.state:<9} {self.task} {self.task_id}"
        if self.attempt is not None:
            line += f" attempt={self.attempt}"
        if self.error_type is not None:
            line += f" error={self.error_type}: {self.error_message}"
        return line


#: Called with each event a subscription matches; it should return quickly.
EventHandler = Callable[[TaskEvent], None]


def topic_matches(pattern: str, routing_key: str) -> bool:
    """Whether an AMQP topic ``pattern`` (``*`` one word, ``#`` zero or more) selects
    ``routing_key``, as RabbitMQ decides it; for subscribers on the memory broker."""
    words, keys = pattern.split("."), routing_key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(words):
            return j == len(keys)
        if words[i] == "#":
            return any(match(i + 1, k) for k in range(j, len(keys) + 1))
        return j < len(keys) and words[i] in ("*", keys[j]) and match(i + 1, j + 1)

    return match(0, 0)


class Subscription(ABC):
    """A running subscription; :meth:`close` ends it."""

    @abstractmethod
    async def close(self) -> None: ...


class EventChannel(ABC):
    """Where events go and come from: RabbitMQ or this process."""

    @abstractmethod
    async def publish(self, event: TaskEvent) -> None: ...

    @abstractmethod
    async def subscribe(self, pattern: str, handler: EventHandler) -> Subscription: ...

    @abstractmethod
    async def close(self) -> None: ...


class _LocalSubscription(Subscription):
    def __init__(self, channel: LocalEvents, pattern: str, handler: EventHandler) -> None:
        self.channel, self.pattern, self.handler = channel, pattern, handler

    async def close(self) -> None:
        self.channel.subscriptions.discard(self)


class LocalEvents(EventChannel):
    """In-process delivery, for apps on the embedded broker."""

    def __init__(self) -> None:
        self.subscriptions: set[_LocalSubscription] = set()

    async def publish(self, event: TaskEvent) -> None:
        key = event.routing_key
        for subscription in list(self.subscriptions):
            if topic_matches(subscription.pattern, key):
                subscription.handler(event)

    async def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        subscription = _LocalSubscription(self, pattern, handler)
        self.subscriptions.add(subscription)
        return subscription

    async def close(self) -> None:
        self.subscriptions.clear()


class Events:
    """An app's events: :meth:`emit` where a state is recorded, :meth:`subscribe` to
    watch them."""

    def __init__(self, channel: EventChannel, exchange: str) -> None:
        self.channel = channel
        self.exchange = exchange
        #: Wakes :meth:`TaskHandle.result` waiters, on RabbitMQ only: in-process, the
        #: memory store wakes them itself.
        self.waker = None if isinstance(channel, LocalEvents) else ResultWaker(self)

    @classmethod
    def for_broker(cls, broker: Broker, exchange: str) -> Events:
        """Events on RabbitMQ for an AMQP broker, in-process for any other."""
        # Imported here, as broker_from_url does: an app on memory:// loads no aio-pika.
        from taskq.brokers.memory import MemoryBroker

        if isinstance(broker, MemoryBroker):
            return cls(LocalEvents(), exchange)
        from taskq.brokers.amqp import AmqpBroker
        from taskq.brokers.amqp_events import AmqpEvents

        channel = AmqpEvents(broker) if isinstance(broker, AmqpBroker) else LocalEvents()
        return cls(channel, exchange)

    async def emit(
        self,
        state: str,
        task_id: str,
        task: str,
        *,
        attempt: int | None = None,
        error: ErrorInfo | None = None,
    ) -> None:
        """Publish one event; never raises (but ``CancelledError``) and never waits
        longer than :data:`EMIT_TIMEOUT`."""
        event = TaskEvent(
            task_id=task_id,
            task=task,
            state=state,
            attempt=attempt,
            time=utcnow().isoformat(),
            exchange=self.exchange,
            error_type=error.type if error is not None else None,
            error_message=error.message if error is not None else None,
            pid=os.getpid(),  # after a fork too
            host=_HOST,
        )
        try:
            async with asyncio.timeout(EMIT_TIMEOUT):
                await self.channel.publish(event)
        except Exception as exc:  # best-effort, by design
            log.debug("event dropped", task_id=task_id, task=task, state=state, error=repr(exc))

    async def subscribe(self, pattern: str, handler: EventHandler) -> Subscription:
        """Call ``handler`` for each event whose routing key ``pattern`` selects."""
        return await self.channel.subscribe(pattern, handler)

    async def close(self) -> None:
        if self.waker is not None:
            self.waker.forget()
        try:
            await self.channel.close()
        except Exception as exc:  # a connection already gone: nothing is lost
            log.debug("events channel closed with an error", error=repr(exc))


#: Seconds a waiter sleeps at most between reads of the store: an event may be lost.
WAKE_FALLBACK = 1.0
#: Seconds ``result()`` gives the subscription to set up before it polls instead.
WATCH_TIMEOUT = 2.0


class ResultWaker:
    """One subscription per app to ``succeeded.#`` and ``failed.#``, waking whoever
    waits for that task id, so ``handle.result()`` need not poll the store every
    quarter second. Events only wake: the outcome is always read from the store, and a
    waiter reads it again every :data:`WAKE_FALLBACK` seconds whatever happens."""

    def __init__(self, events: Events) -> None:
        self.events = events
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._subscriptions: list[Subscription] = []
        self._lock = asyncio.Lock()

    async def _watch(self) -> bool:
        """Subscribe once; ``False`` if that cannot be done now (then we poll)."""
        if self._subscriptions:
            return True
        async with self._lock:
            if not self._subscriptions:
                try:
                    async with asyncio.timeout(WATCH_TIMEOUT):
                        for pattern in ("succeeded.#", "failed.#"):
                            subscription = await self.events.subscribe(pattern, self._wake)
                            self._subscriptions.append(subscription)
                except Exception as exc:  # best-effort: the store is polled instead
                    log.debug("cannot watch for results; polling", error=repr(exc))
                    self._subscriptions.clear()
                    return False
        return True

    def _wake(self, event: TaskEvent) -> None:
        for waiter in self._waiters.get(event.task_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    def forget(self) -> None:
        """The connection is closing: subscribe again on next use."""
        self._subscriptions.clear()

    async def wait(
        self, task_id: str, read: Callable[[], Awaitable[TaskStatus | None]], timeout: float
    ) -> TaskStatus | None:
        """Read the status with ``read`` until it is finished or ``timeout`` seconds
        passed, sleeping in between until an event for ``task_id`` (or the fallback)
        wakes us; returns the last status read."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        watching = await self._watch()
        while True:
            # Registered before the read: an event landing between the two still wakes us.
            woken: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(task_id, set()).add(woken)
            try:
                status = await read()
                left = deadline - loop.time()
                if (status is not None and status.finished) or left <= 0:
                    return status
                pause = min(left, WAKE_FALLBACK if watching else 0.25)
                await asyncio.wait([woken], timeout=pause)
            finally:
                waiting = self._waiters.get(task_id)
                if waiting is not None:
                    waiting.discard(woken)
                    if not waiting:
                        del self._waiters[task_id]
