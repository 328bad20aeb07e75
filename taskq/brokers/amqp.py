"""RabbitMQ through aio-pika: publisher confirms, manual acks, a dead-letter queue.

Two robust connections (aio-pika's, through :mod:`taskq.brokers.amqp_nodes`): one
publishes, one consumes, because a memory or disk alarm blocks publishing connections
only and must not stall acks.
Declarations go through robust channels, so aio-pika declares them again after a
reconnect; what we remember ourselves (which queues this connection declared) is
forgotten in a ``reconnect_callbacks`` hook.
Declarations the broker may refuse run first on a scratch channel (``amqp_declare``).

    broker = AmqpBroker("amqp://guest:guest@localhost/", Topology("shop"))
    await broker.connect()
    await broker.publish(QueueSpec("emails.send"), body, task_id=task_id)

The URL may be a cluster's nodes (a list, or ``;``-separated): every connection goes to
the first that answers and on to the next when it loses its node
(:mod:`taskq.brokers.amqp_nodes`); a publish whose node died under it is published
again on the next (:mod:`taskq.brokers.amqp_failover`).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace

import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractQueue, AbstractRobustConnection, ExchangeType

from taskq.brokers.amqp_consumer import AmqpConsumer
from taskq.brokers.amqp_control import AmqpControlConsumer
from taskq.brokers.amqp_core import AmqpCore, _Publisher
from taskq.brokers.amqp_declare import bind_task_queue, declare_queue, scratch_channel
from taskq.brokers.amqp_delay import DelayLevels
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.amqp_inspect import AmqpInspection
from taskq.brokers.amqp_management import ManagementApi
from taskq.brokers.amqp_nodes import BrokerNode, NodesConnection, connect_nodes
from taskq.brokers.amqp_publish import Outcome
from taskq.brokers.amqp_scheduler import AmqpSchedulerConsumer
from taskq.brokers.amqp_server import quorum_priority_levels, server_properties
from taskq.brokers.amqp_side_channels import AmqpSideChannels
from taskq.brokers.amqp_window import AmqpPublishWindow
from taskq.brokers.base import PUBLISH_WINDOW, DeliveryHandler, Outgoing
from taskq.coalesce import Coalescer
from taskq.errors import BrokerConnectionError, BrokerError, ConfigurationError
from taskq.logs import get_logger
from taskq.topology import QueueSpec, Topology, delay_units
from taskq.urls import join_urls, mask_url, split_urls

log = get_logger(__name__)


class AmqpBroker(AmqpInspection, AmqpSideChannels, AmqpPublishWindow, AmqpCore):
    """A :class:`Broker` on RabbitMQ 3.10+; the objects it declares are the README's
    wire format. Connections, declarations, publishing and consuming are here; the
    publish window machinery, the control/broadcast/scheduler traffic and inspection
    and cleanup are in the mixins it is made of."""

    def __init__(
        self,
        url: str | Sequence[str],
        topology: Topology,
        *,
        publish_timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``url``: ``amqp://`` or ``amqps://``, with heartbeat and TLS options in its
        query (:mod:`taskq.brokers.amqp_options`); for a cluster, its nodes' URLs in a
        list or separated by ``;``, each with its own. ``ssl_context``, for ``amqps://``
        URLs, replaces their TLS options: for what they cannot say (a key's passphrase,
        ciphers, a certificate held in memory)."""
        super().__init__(topology, publish_timeout=publish_timeout)
        urls = split_urls(url)
        try:
            self.display_url = mask_url(join_urls(urls))
            nodes = [BrokerNode.from_url(each, ssl_context) for each in urls]
        except ValueError as exc:  # a port that is not a number: don't echo the URL
            raise ConfigurationError(f"the AMQP URL is not valid: {exc}") from None
        #: The URLs as one string: errors show it masked, and scrub each node's secrets.
        self._url = join_urls(urls)
        self._nodes = nodes
        # With one node there is no other to publish on: a publish caught by a lost
        # connection raises PublishError, as it always did (the caller decides).
        self._fails_over = len(nodes) > 1
        self._lock = asyncio.Lock()
        self._publisher: _Publisher | None = None
        self._consuming: AbstractRobustConnection | None = None
        self._consumers: set[AmqpConsumer] = set()
        self._control_consumers: set[AmqpControlConsumer | AmqpSchedulerConsumer] = set()
        #: Priority levels of the server's quorum queues, read on the first connect
        #: and kept: a reconnect must not change what a queue is declared as.
        self._quorum_levels: int | None = None
        #: Called after each reconnect of any of its connections (``on_reconnect``).
        self._reconnect_listeners: list[Callable[[], None]] = []
        # Batched by queue, delay and priority: a window carries one of each. Eager: a
        # publish alone goes out at once, in its caller's task (taskq.coalesce).
        self._coalesced: Coalescer[tuple[QueueSpec, float, int], Outgoing, Outcome] = Coalescer(
            lambda key, items: self.publish_many(key[0], items, delay=key[1], priority=key[2]),
            eager=True,
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
                    url=self.node_url(),
                    exchange=self.topology.exchange,
                    quorum_priority_levels=self._quorum_levels,
                )

    def node_url(self) -> str:
        """The node the publishing connection is on (the first node before a connect),
        password masked."""
        return self._node().display_url

    def _node(self) -> BrokerNode:
        publisher = self._publisher
        if publisher is not None and isinstance(publisher.connection, NodesConnection):
            return publisher.connection.node
        return self._nodes[0]

    def quorum_priority_levels(self) -> int | None:
        """From the server's version (:mod:`taskq.brokers.amqp_server`), as read on the
        first connect: ``None`` on RabbitMQ 3.x."""
        return self._quorum_levels

    async def _open(self, role: str) -> AbstractRobustConnection:
        # fail_fast (aio-pika's default): a wrong password or host raises here, at once
        # (with several nodes, once every node was tried). Each node's attempt is time
        # boxed by aio-pika; connect_nodes closes an attempt it abandons, cancelled too.
        with amqp_errors(self._url):
            connection = await connect_nodes(
                self._nodes,
                timeout=self.publish_timeout,
                client_properties={"connection_name": f"taskq {role} {self.topology.exchange}"},
            )
            connection.reconnect_callbacks.add(self._reconnected)
            return connection

    def on_reconnect(self, callback: Callable[[], None]) -> None:
        self._reconnect_listeners.append(callback)

    def _reconnected(self, _: AbstractRobustConnection | None = None) -> None:
        for callback in self._reconnect_listeners:
            callback()

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
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # With the other publishes of this turn of the event loop: concurrent senders
        # share one window of confirms instead of one time box and wait each.
        item: Outgoing = (task_id, body) if headers is None else (task_id, body, headers)
        outcome = await self._coalesced((queue, delay, priority), item)
        if outcome is not None:
            raise outcome

    async def publish_many(
        self,
        queue: QueueSpec,
        messages: Sequence[Outgoing],
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

    def management_api(self, management_url: str | None = None) -> ManagementApi:
        # The node this process is on first (before a connect: the first of the list);
        # any node's API answers for the whole cluster, so with no URL given the
        # others' are asked in turn while it does not answer.
        here = self._node()
        if management_url is not None:
            return ManagementApi.for_amqp_url(here.url, management_url)
        at = self._nodes.index(here) if here in self._nodes else 0
        apis = [ManagementApi.for_amqp_url(n.url) for n in self._nodes[at:] + self._nodes[:at]]
        return replace(apis[0], others=tuple(apis[1:]))
