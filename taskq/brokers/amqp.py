"""RabbitMQ through aio-pika: publisher confirms, manual acks, a dead-letter queue.

Two robust connections (``connect_robust``): one publishes, one consumes, because a
memory or disk alarm blocks publishing connections only and must not stall acks.
Declarations go through robust channels, so aio-pika declares them again after a
reconnect; what we remember ourselves (which queues this connection declared) is
forgotten in a ``reconnect_callbacks`` hook.
Declarations the broker may refuse run first on a scratch channel (``amqp_declare``).

    broker = AmqpBroker("amqp://guest:guest@localhost/", Topology("shop"))
    await broker.connect()
    await broker.publish(QueueSpec("emails.send"), body, task_id=task_id)
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import aiormq.exceptions
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    DeliveryMode,
    ExchangeType,
)

from taskq.brokers.amqp_consumer import AmqpConsumer, AmqpDelivery
from taskq.brokers.amqp_control import (
    AmqpControlConsumer,
    consume_control,
    declare_control,
    publish_control,
)
from taskq.brokers.amqp_declare import (
    bind_task_queue,
    declare_queue,
    inspect_queue,
    scratch_channel,
)
from taskq.brokers.amqp_delay import DelayLevels, delete_levels
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.amqp_options import connect_options
from taskq.brokers.amqp_publish import (
    Outcome,
    message_id,
    publish_window,
    returned,
    translate,
    underlay,
)
from taskq.brokers.amqp_server import quorum_priority_levels, server_properties
from taskq.brokers.base import (
    PUBLISH_WINDOW,
    Broker,
    ControlHandler,
    DeadLetter,
    Delivery,
    DeliveryHandler,
    PrepareRequeue,
    QueueInfo,
)
from taskq.brokers.dead import (
    check_ids,
    dead_letter_headers,
    read_dead_letter,
    republish,
    selects,
)
from taskq.coalesce import Coalescer
from taskq.errors import BrokerConnectionError, BrokerError, ConfigurationError
from taskq.topology import (
    QueueSpec,
    Topology,
    delay_level,
    delay_routing_key,
    delay_units,
)
from taskq.urls import mask_url

log = structlog.get_logger(__name__)


@dataclass(eq=False)
class _Publisher:
    """The publishing connection, its confirm channel and what it declared."""

    connection: AbstractRobustConnection
    channel: AbstractRobustChannel
    exchange: AbstractRobustExchange
    dead_exchange: AbstractRobustExchange
    #: The delay levels, declared on demand by delayed publishes.
    delays: DelayLevels
    #: Specs declared and bound on this connection since it last (re)connected (the
    #: spec, not the name: another queue type for the same task must reach the broker).
    declared: set[QueueSpec] = field(default_factory=set)
    #: Robust queue objects already registered on ``channel``: declared again through
    #: them, so a reconnect does not add one more object to replay each time.
    queues: dict[str, AbstractQueue] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The control exchange, declared on the first control message.
    control: AbstractExchange | None = None

    def forget(self, _: AbstractRobustConnection | None = None) -> None:
        self.declared.clear()
        self.delays.forget()


@dataclass(frozen=True)
class _Target:
    """The exchange and routing key a publish goes to, and how to declare its queue
    again when the broker returns it unroutable."""

    exchange: str
    routing_key: str
    redeclare: Callable[[], Awaitable[None]]


class AmqpBroker(Broker):
    """A :class:`Broker` on RabbitMQ 3.10+; the objects it declares are the README's
    wire format."""

    def __init__(
        self,
        url: str,
        topology: Topology,
        *,
        publish_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``url``: ``amqp://`` or ``amqps://``, with heartbeat and TLS options in its
        query (:mod:`taskq.brokers.amqp_options`). ``ssl_context``, for an ``amqps://``
        URL, replaces the URL's TLS options: for what they cannot say (a key's
        passphrase, ciphers, a certificate held in memory)."""
        super().__init__(topology, publish_timeout=publish_timeout)
        try:
            self.display_url = mask_url(url)
        except ValueError as exc:  # a port that is not a number: don't echo the URL
            raise ConfigurationError(f"the AMQP URL is not valid: {exc}") from None
        self._url = url
        self._connect_options = connect_options(url, ssl_context)
        self._lock = asyncio.Lock()
        self._publisher: _Publisher | None = None
        self._consuming: AbstractRobustConnection | None = None
        self._consumers: set[AmqpConsumer] = set()
        self._control_consumers: set[AmqpControlConsumer] = set()
        #: Priority levels of the server's quorum queues, read on the first connect
        #: and kept: a reconnect must not change what a queue is declared as.
        self._quorum_levels: int | None = None
        # Batched by queue, delay and priority: a window carries one of each.
        self._coalesced: Coalescer[tuple[QueueSpec, float, int], tuple[str, bytes], Outcome] = (
            Coalescer(
                lambda key, messages: self.publish_many(
                    key[0], messages, delay=key[1], priority=key[2]
                )
            )
        )

    # -- connections --------------------------------------------------------------

    async def connect(self) -> None:
        if self._publisher is not None:
            return
        async with self._lock:
            if self._publisher is None:
                self._publisher = await self._open_publisher()
                log.info(
                    "broker connected",
                    url=self.display_url,
                    exchange=self.topology.exchange,
                    quorum_priority_levels=self._quorum_levels,
                )

    def quorum_priority_levels(self) -> int | None:
        """From the server's version (:mod:`taskq.brokers.amqp_server`), as read on the
        first connect: ``None`` on RabbitMQ 3.x."""
        return self._quorum_levels

    async def _open(self, role: str) -> AbstractRobustConnection:
        # fail_fast (aio-pika's default): a wrong password or host raises here, at once.
        # Not inside an outer time box: cancelling connect_robust half-way would leave
        # its reconnect task running with no connection object to close it by.
        with amqp_errors(self._url):
            connection: AbstractRobustConnection = await aio_pika.connect_robust(
                self._url,
                timeout=self.publish_timeout,
                client_properties={"connection_name": f"taskq {role} {self.topology.exchange}"},
                **self._connect_options,  # heartbeat unless the URL says, ssl_context
            )
            return connection

    async def open_connection(self, role: str) -> AbstractRobustConnection:
        """A robust connection to this broker for a side channel of ``role`` (lifecycle
        events: :mod:`taskq.events`), apart from the task traffic; the caller closes it."""
        return await self._open(role)

    async def _open_publisher(self) -> _Publisher:
        t = self.topology
        connection = await self._open("publish")
        if self._quorum_levels is None:
            self._quorum_levels = quorum_priority_levels(server_properties(connection))
        try:
            async with self._calling():
                channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                exchange = await channel.declare_exchange(
                    t.exchange, ExchangeType.TOPIC, durable=True
                )
                dead_exchange = await channel.declare_exchange(
                    t.dead_exchange, ExchangeType.FANOUT, durable=True
                )
                publisher = _Publisher(connection, channel, exchange, dead_exchange, DelayLevels(t))
                await self._declare_dead_queue(publisher)
        except BaseException:
            await connection.close()
            raise
        connection.reconnect_callbacks.add(publisher.forget)
        return publisher

    async def _consuming_connection(self) -> AbstractRobustConnection:
        async with self._lock:
            if self._consuming is None:
                self._consuming = await self._open("consume")
            return self._consuming

    async def close(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        for control in list(self._control_consumers):
            await control.close()
        self._control_consumers.clear()
        async with self._lock:
            publisher, self._publisher = self._publisher, None
            consuming, self._consuming = self._consuming, None
        for connection in (consuming, publisher.connection if publisher else None):
            if connection is not None:
                try:
                    await connection.close()
                except (aiormq.exceptions.AMQPError, OSError) as exc:
                    log.info("connection already closed", url=self.display_url, error=repr(exc))

    # -- declarations -------------------------------------------------------------

    async def _declare_task_queue(
        self,
        connection: AbstractRobustConnection,
        channel: AbstractChannel,
        spec: QueueSpec,
        *,
        known: AbstractQueue | None = None,
    ) -> AbstractQueue:
        return await declare_queue(
            connection,
            channel,
            self.topology.queue_name(spec.task),
            self.queue_arguments(spec),
            use_existing=not spec.authoritative,
            known=known,
        )

    async def _ensure_queue(self, publisher: _Publisher, spec: QueueSpec) -> None:
        """Declare and bind a task queue once per connection, before its first publish."""
        if spec in publisher.declared:
            return
        async with publisher.lock:
            if spec in publisher.declared:
                return
            name = self.topology.queue_name(spec.task)
            connection = publisher.connection
            if spec.authoritative:
                queue = await self._declare_task_queue(
                    connection, publisher.channel, spec, known=publisher.queues.get(name)
                )
                await bind_task_queue(queue, publisher.exchange, spec.task)
                publisher.queues[name] = queue
            else:
                # Not ours to replay after a reconnect: the queue may be gone by then,
                # and a failed passive replay would stall the whole reconnect. Declared
                # and bound on a scratch channel; `forget` re-checks it after a reconnect.
                async with scratch_channel(connection) as scratch:
                    queue = await self._declare_task_queue(connection, scratch, spec)
                    await bind_task_queue(queue, self.topology.exchange, spec.task)
            publisher.declared.add(spec)
            log.debug("queue declared", queue=name, queue_type=self.declared_queue_type(spec))

    async def _declare_dead_queue(self, publisher: _Publisher) -> None:
        t = self.topology
        queue = await declare_queue(
            publisher.connection,
            publisher.channel,
            t.dead_queue,
            t.dead_queue_arguments(),
            known=publisher.queues.get(t.dead_queue),
        )
        await queue.bind(publisher.dead_exchange, "")
        publisher.queues[t.dead_queue] = queue

    # -- publishing ---------------------------------------------------------------

    @asynccontextmanager
    async def _calling(
        self,
        *,
        publishing: bool = False,
        task_id: str | None = None,
        deadline: float | None = None,
    ) -> AsyncIterator[None]:
        """Every call into aio-pika: time-boxed (a blocked or reconnecting connection
        waits silently), by ``publish_timeout`` or until the loop time ``deadline``,
        and with its errors translated."""
        with amqp_errors(
            self._url, publishing=publishing, task_id=task_id, timeout=self.publish_timeout
        ):
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + self.publish_timeout
            async with asyncio.timeout_at(deadline):
                yield

    async def _ready_publisher(self) -> _Publisher:
        publisher = self._publisher
        if publisher is None:  # closed while this call was on its way
            raise BrokerConnectionError(f"the broker at {self.display_url} is closed")
        await publisher.channel.ready()  # waits out a reconnect, within the time box
        return publisher

    async def publish(
        self,
        queue: QueueSpec,
        body: bytes,
        *,
        task_id: str,
        delay: float = 0.0,
        priority: int = 0,
    ) -> None:
        # With the other publishes of this turn of the event loop: concurrent senders
        # share one window of confirms instead of one time box and wait each.
        outcome = await self._coalesced((queue, delay, priority), (task_id, body))
        if outcome is not None:
            raise outcome

    async def publish_many(
        self,
        queue: QueueSpec,
        messages: Sequence[tuple[str, bytes]],
        *,
        delay: float = 0.0,
        priority: int = 0,
    ) -> list[BaseException | None]:
        units = delay_units(delay)  # a delay too long is refused before anything is sent
        if not messages:
            return []
        await self.connect()
        single = messages[0][0] if len(messages) == 1 else None  # named in its errors
        outcomes: list[BaseException | None] = []
        for start in range(0, len(messages), PUBLISH_WINDOW):
            window = messages[start : start + PUBLISH_WINDOW]
            try:
                outcomes += await self._publish_window(
                    queue, units, window, task_id=single, priority=priority
                )
            except BrokerError as exc:
                if not outcomes:
                    raise  # nothing was published
                # The connection went between two windows: the rest was never sent.
                outcomes += [exc] * (len(messages) - len(outcomes))
                break
        return outcomes

    async def _publish_window(
        self,
        queue: QueueSpec,
        units: int,
        window: Sequence[tuple[str, bytes]],
        *,
        task_id: str | None,
        priority: int = 0,
    ) -> list[BaseException | None]:
        """One window, its confirms awaited together, all within ``publish_timeout``
        (the declarations, the publishes and the retry of returned messages)."""
        deadline = asyncio.get_running_loop().time() + self.publish_timeout
        async with self._calling(publishing=True, task_id=task_id, deadline=deadline):
            publisher = await self._ready_publisher()
            # Before a delayed publish too: its message comes back to the task exchange,
            # and needs the queue's delay binding there.
            await self._ensure_queue(publisher, queue)
            target = await self._target(publisher, queue, units)
            channel = underlay(await publisher.channel.get_underlay_channel())

        async def publish(items: Sequence[tuple[str, bytes]]) -> list[BaseException | None]:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            return await publish_window(
                channel, target.exchange, target.routing_key, items, timeout=left, priority=priority
            )

        outcomes = await publish(window)
        again = [index for index, outcome in enumerate(outcomes) if returned(outcome)]
        if again:
            # Returned: the queue (or delay level) went away behind our back. Declare it
            # again and retry those once.
            log.warning(
                "publish returned unroutable; declaring the queue again",
                exchange=target.exchange,
                routing_key=target.routing_key,
                returned=len(again),
            )
            async with self._calling(publishing=True, task_id=task_id, deadline=deadline):
                await target.redeclare()
                channel = underlay(await publisher.channel.get_underlay_channel())
            retried = await publish([window[index] for index in again])
            for index, outcome in zip(again, retried, strict=True):
                outcomes[index] = outcome
        ids = [message[0] for message in window]
        return translate(outcomes, ids, self._url, self.publish_timeout)

    async def _target(self, publisher: _Publisher, queue: QueueSpec, units: int) -> _Target:
        """Where a publish goes: the task exchange, or for a delay the level of its
        highest bit, from which RabbitMQ hands it down the levels and back to the task
        exchange (``taskq.topology``); confirmed once it is in that level's queue."""
        if not units:

            async def redeclare_queue() -> None:
                publisher.declared.discard(queue)
                await self._ensure_queue(publisher, queue)

            return _Target(self.topology.exchange, queue.task, redeclare_queue)
        top = delay_level(units)
        levels = publisher.delays
        await levels.ensure(publisher.connection, top)

        async def redeclare_level() -> None:
            levels.forget()
            await levels.ensure(publisher.connection, top)

        return _Target(
            self.topology.delay_exchange(top), delay_routing_key(units, queue.task), redeclare_level
        )

    async def _publish_mandatory(
        self,
        exchange: AbstractExchange,
        routing_key: str,
        message: Callable[[], aio_pika.Message],
        redeclare: Callable[[], Awaitable[None]],
    ) -> None:
        """Publish and wait for the confirm. A return means the queue went away behind
        our back (deleted, or unbound): declare it again and retry once."""
        try:
            await exchange.publish(
                message(), routing_key, mandatory=True, timeout=self.publish_timeout
            )
        except aiormq.exceptions.PublishError:
            log.warning(
                "publish returned unroutable; declaring the queue again",
                exchange=exchange.name,
                routing_key=routing_key,
            )
            await redeclare()
            await exchange.publish(
                message(), routing_key, mandatory=True, timeout=self.publish_timeout
            )

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self.connect()
        headers = dead_letter_headers(
            _publishable(delivery.headers), reason=reason, queue=delivery.queue
        )
        content_type = delivery.content_type if isinstance(delivery, AmqpDelivery) else None

        def message() -> aio_pika.Message:
            return aio_pika.Message(
                delivery.body,
                headers=headers,
                delivery_mode=DeliveryMode.PERSISTENT,
                content_type=content_type,
                correlation_id=delivery.correlation_id,
                message_id=message_id(),
                priority=delivery.priority or None,  # kept for a requeue
            )

        async with self._calling(publishing=True, task_id=delivery.correlation_id):
            publisher = await self._ready_publisher()
            await self._publish_mandatory(
                publisher.dead_exchange,
                delivery.routing_key,
                message,
                lambda: self._declare_dead_queue(publisher),
            )

    # -- consuming ----------------------------------------------------------------

    async def consume(
        self, queues: Sequence[QueueSpec], handler: DeliveryHandler, *, prefetch: int
    ) -> AmqpConsumer:
        await self.connect()
        connection = await self._consuming_connection()
        async with self._calling():
            channel = await connection.channel()
            consumer = AmqpConsumer(
                channel, handler, on_close=self._consumers.discard, timeout=self.publish_timeout
            )
            try:
                # basic.qos per consumer (global=false; quorum queues refuse global QoS):
                # each queue of this call gets up to `prefetch` unsettled deliveries.
                await channel.set_qos(prefetch_count=prefetch)
                exchange = await channel.declare_exchange(
                    self.topology.exchange, ExchangeType.TOPIC, durable=True
                )
                for spec in queues:
                    queue = await self._declare_task_queue(connection, channel, spec)
                    await bind_task_queue(queue, exchange, spec.task)
                    await consumer.subscribe(
                        queue,
                        exchange,
                        task=spec.task,
                        # As declared (a passive declare of an existing queue by
                        # name knows no arguments: not counted, as before).
                        counted=(queue.arguments or {}).get("x-queue-type") == "quorum",
                    )
            except BaseException:
                await consumer.close()
                raise
        self._consumers.add(consumer)
        log.info(
            "consuming",
            queues=[self.topology.queue_name(spec.task) for spec in queues],
            prefetch=prefetch,
        )
        return consumer

    # -- control messages (taskq.brokers.amqp_control) -----------------------------

    async def publish_control(self, body: bytes) -> None:
        await self.connect()
        async with self._calling(publishing=True):
            publisher = await self._ready_publisher()
            if publisher.control is None:
                publisher.control = await declare_control(publisher.channel, self.topology)
            await publish_control(publisher.control, body)

    async def consume_control(self, worker_id: str, handler: ControlHandler) -> AmqpControlConsumer:
        await self.connect()
        connection = await self._consuming_connection()
        async with self._calling():
            consumer = await consume_control(connection, self.topology, worker_id, handler)
        self._control_consumers.add(consumer)
        return consumer

    # -- inspection and cleanup ---------------------------------------------------

    async def dead_letters(self, limit: int = 100, *, task: str | None = None) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        async with aclosing(self._browse_dead()) as browse:
            async for _, letter in browse:
                if len(letters) < limit and selects(letter, task=task, ids=frozenset()):
                    letters.append(letter)
        return letters

    async def requeue_dead(
        self,
        *,
        task: str | None = None,
        ids: Sequence[str] = (),
        prepare: PrepareRequeue | None = None,
    ) -> list[DeadLetter]:
        wanted = check_ids(ids)
        requeued: list[DeadLetter] = []
        done: set[str | None] = set()  # task ids requeued by this call
        async with aclosing(self._browse_dead()) as browse:
            async for message, letter in browse:
                # Acked only once the publish is confirmed; the others stay held and go
                # back when the browse ends, as does this one if anything raises. A task
                # already requeued by this call that died again meanwhile stays dead.
                if (
                    selects(letter, task=task, ids=wanted)
                    and letter.task_id not in done
                    and await republish(self, letter, prepare)
                ):
                    async with self._calling():
                        await message.ack()
                    requeued.append(letter)
                    done.add(letter.task_id)
        return requeued

    async def purge_dead(self) -> int:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            async with scratch_channel(publisher.connection) as channel:
                queue = await channel.get_queue(self.topology.dead_queue, ensure=False)
                purged = await queue.purge()
        return purged.message_count or 0

    async def _browse_dead(
        self,
    ) -> AsyncGenerator[tuple[AbstractIncomingMessage, DeadLetter], None]:
        """Every message in the dead-letter queue, oldest first, each taken with
        basic.get and held unacked on a channel of the browse's own; at the end, one
        ``basic.nack(multiple, requeue)`` gives back, in order, every one not acked.

        Always the whole queue, even for a short listing: the dead-letter queue is a
        quorum queue, which puts a message given back at its *back* (RabbitMQ 3.10,
        measured), so browsing only the first few would move them behind the rest; a
        whole round leaves the order as it was. Until basic.get finds none: the count
        a passive declare gives lags, and missed the messages a browse just before had
        given back (measured), so it only caps a browse, at twice itself and 1,000
        more, for a stream of new dead letters not to keep it going. The explicit nack,
        rather than closing the channel alone, has them back in the queue before a
        later browse's first basic.get. Each step is time-boxed, not the whole browse."""
        await self.connect()
        with amqp_errors(self._url):  # opening and closing the browse's channel
            async with self._calling():
                publisher = await self._ready_publisher()
            async with scratch_channel(publisher.connection) as channel:
                async with self._calling():
                    queue = await channel.declare_queue(self.topology.dead_queue, passive=True)
                cap = 2 * (queue.declaration_result.message_count or 0) + 1000
                latest: AbstractIncomingMessage | None = None  # the last one taken
                unacked: AbstractIncomingMessage | None = None  # the last before it left
                try:
                    for _ in range(cap):
                        async with self._calling():
                            message = await queue.get(no_ack=False, fail=False)
                        if message is None:
                            return
                        if latest is not None and not latest.processed:
                            unacked = latest
                        latest = message
                        yield message, _dead_letter(self.topology, message)
                finally:
                    last = latest if latest is not None and not latest.processed else unacked
                    if last is not None:
                        try:
                            async with self._calling():
                                await last.nack(multiple=True, requeue=True)
                        except BrokerError as exc:  # its channel is gone: they are back
                            log.info("dead letters not given back by nack", error=str(exc))

    async def queue_info(self, task: str) -> QueueInfo | None:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            return await inspect_queue(publisher.connection, self.topology.queue_name(task))

    async def dead_queue_info(self) -> QueueInfo | None:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            return await inspect_queue(publisher.connection, self.topology.dead_queue)

    async def destroy(self, tasks: Iterable[str]) -> None:
        """Delete everything this topology declared, on a connection of its own after
        closing ours: our consumers would declare their deleted queues again to restore
        them, and a publish racing the deletion of its quorum queue crashes the channel
        in RabbitMQ 3.10 (INTERNAL_ERROR, seen in the worker tests' teardown). A later
        call connects and declares again."""
        await self.close()
        t = self.topology
        connection = await self._open("destroy")
        try:
            async with self._calling(), scratch_channel(connection) as channel:
                # RabbitMQ answers delete-ok for a queue or exchange that does not exist.
                for task in tasks:
                    await channel.queue_delete(t.queue_name(task))
                await channel.queue_delete(t.dead_queue)
                await channel.exchange_delete(t.exchange)
                await channel.exchange_delete(t.dead_exchange)
                await channel.exchange_delete(t.control_exchange)
                await delete_levels(channel, t)
        finally:
            await connection.close()
        log.info("topology destroyed", exchange=t.exchange)


def _publishable(value: Any) -> Any:
    """Headers as received, made publishable again: pamqp decodes a long string that is
    not UTF-8 (another client's binary header) as ``bytes``, which it cannot encode;
    as a ``bytearray`` it goes out as an AMQP byte array with the same bytes."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, Mapping):
        return {key: _publishable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_publishable(item) for item in value]
    return value


def _dead_letter(topology: Topology, message: AbstractIncomingMessage) -> DeadLetter:
    return read_dead_letter(
        topology,
        body=message.body,
        routing_key=message.routing_key or "",
        headers=message.headers,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        priority=message.priority or 0,
    )
