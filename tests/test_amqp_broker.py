"""AmqpBroker against a real RabbitMQ: what the memory broker cannot show.

Connection failures, the password kept out of errors and logs, queues deleted behind
the publisher's back, unconfirmed publishes, many confirms in flight, and messages from
clients that are not taskq.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
import pytest
import pytest_asyncio
from structlog.testing import capture_logs

from taskq.brokers import amqp_consumer
from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Delivery, DeliveryHandler
from taskq.errors import BrokerConnectionError, PublishError, QueueMismatch
from taskq.message import TaskMessage
from taskq.status import utcnow
from taskq.topology import DELAY_LEVELS, QueueSpec, Topology
from tests.helpers import eventually

TASK = QueueSpec("emails.send")


@pytest_asyncio.fixture
async def broker(amqp_url: str, exchange: str) -> AsyncIterator[AmqpBroker]:
    broker = AmqpBroker(amqp_url, Topology(exchange), publish_timeout=5.0)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.destroy([TASK.task])
        await broker.close()


@pytest_asyncio.fixture
async def channel(amqp_url: str) -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain aio-pika channel: another client, acting behind the broker's back."""
    connection = await aio_pika.connect(amqp_url)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password}@{parts.hostname}:{parts.port or 5672}"
    return urlunsplit(parts._replace(netloc=netloc))


class TcpProxy:
    """Forwards a local port to RabbitMQ; :meth:`drop` cuts every connection through it,
    as a network fault would (after aio-pika's ``tests/test_amqp_robust_proxy.py``)."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self._upstream = (parts.hostname or "127.0.0.1", parts.port or 5672)
        self._url = parts
        self._writers: set[asyncio.StreamWriter] = set()
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self, **query: str) -> str:
        """Start listening; returns the broker URL through the proxy, with ``query``."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        netloc = f"{self._url.username}:{self._url.password}@127.0.0.1:{port}"
        return urlunsplit(self._url._replace(netloc=netloc, query=urlencode(query)))

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self._upstream)
        self._writers |= {writer, up_writer}
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pipe = asyncio.create_task(self._pipe(source, sink))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        sink.transport.abort()

    def drop(self) -> None:
        for writer in self._writers:
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self._server.close()
        self.drop()
        await asyncio.gather(*self._pipes, return_exceptions=True)
        await self._server.wait_closed()


@pytest_asyncio.fixture
async def proxied(amqp_url: str, exchange: str) -> AsyncIterator[tuple[AmqpBroker, TcpProxy]]:
    """A broker connected through a :class:`TcpProxy`, reconnecting after 0.2 s."""
    proxy = TcpProxy(amqp_url)
    url = await proxy.start(reconnect_interval="0.2")
    broker = AmqpBroker(url, Topology(exchange), publish_timeout=5.0)
    try:
        yield broker, proxy
    finally:
        await broker.destroy([TASK.task])
        await broker.close()
        await proxy.close()


async def _collect(broker: AmqpBroker, count: int, *, prefetch: int = 100) -> list[Delivery]:
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def ack_and_keep(delivery: Delivery) -> None:
        await delivery.ack()
        received.put_nowait(delivery)

    consumer = await broker.consume([TASK], ack_and_keep, prefetch=prefetch)
    try:
        return [await asyncio.wait_for(received.get(), 10.0) for _ in range(count)]
    finally:
        await consumer.close()


async def test_an_unreachable_broker_raises_broker_connection_error_without_the_password(
    exchange: str,
) -> None:
    broker = AmqpBroker("amqp://guest:s3cret@127.0.0.1:1/", Topology(exchange))

    with capture_logs() as logs, pytest.raises(BrokerConnectionError) as raised:
        await broker.connect()

    assert "127.0.0.1:1" in str(raised.value)
    assert "guest:***@" in str(raised.value)
    for shown in (str(raised.value), repr(raised.value), repr(broker), broker.display_url, logs):
        assert "s3cret" not in str(shown)
    await broker.close()


async def test_a_wrong_password_fails_fast_without_showing_it(amqp_url: str, exchange: str) -> None:
    broker = AmqpBroker(_with_password(amqp_url, "s3cret"), Topology(exchange))

    started = time.monotonic()
    with pytest.raises(BrokerConnectionError, match="refused the login") as raised:
        await broker.connect()

    assert time.monotonic() - started < 5.0
    assert "s3cret" not in str(raised.value) and "s3cret" not in repr(raised.value)


async def test_a_queue_deleted_behind_the_publishers_back_is_declared_again(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    await broker.publish(TASK, b"{}", task_id="t-1")  # declares the queue, once
    await channel.queue_delete(broker.topology.queue_name(TASK.task))

    await broker.publish(TASK, b"{}", task_id="t-2")  # returned, declared again, retried

    info = await broker.queue_info(TASK.task)
    assert info is not None and info.ready == 1
    (delivery,) = await _collect(broker, 1)
    assert delivery.correlation_id == "t-2"


async def test_a_consumer_whose_queue_is_deleted_declares_it_again_and_consumes(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    """The broker cancels the consumers of a deleted queue: the consumer declares and
    binds it again and consumes it under the same tag, in a task of its own."""
    received: asyncio.Queue[Delivery] = asyncio.Queue()
    await broker.publish(TASK, b"{}", task_id="t-1")
    consumer = await broker.consume([TASK], _keep_in(received), prefetch=10)
    first = await asyncio.wait_for(received.get(), 5.0)
    await first.ack()

    with capture_logs() as logs:
        await channel.queue_delete(broker.topology.queue_name(TASK.task))
        await eventually(
            lambda: broker.queue_info(TASK.task), lambda i: i is not None and i.consumers == 1
        )
    await broker.publish(TASK, b"{}", task_id="t-2")
    second = await asyncio.wait_for(received.get(), 10.0)
    await second.ack()
    await consumer.close()
    assert second.correlation_id == "t-2"
    assert [e["event"] for e in logs if "consum" in e["event"]] == [
        "the broker cancelled a consumer",
        "consuming again",
    ]


async def test_a_publish_that_stays_unroutable_raises_publish_error(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    await broker.publish(TASK, b"{}", task_id="t-1")
    await channel.queue_delete(broker.topology.queue_name(TASK.task))

    async def declare_nothing(*args: object) -> None:
        pass  # as if the queue were deleted again the moment it is declared

    monkeypatch.setattr(broker, "_ensure_queue", declare_nothing)
    with pytest.raises(PublishError, match="unroutable") as raised:
        await broker.publish(TASK, b"{}", task_id="t-2")
    assert raised.value.task_id == "t-2"


async def test_a_publish_the_broker_nacks_raises_publish_error(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    # Someone else's queue, full at once and refusing more: a send by name uses it as is.
    await channel.declare_queue(
        broker.topology.queue_name(TASK.task),
        durable=True,
        arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
    )
    by_name = QueueSpec(TASK.task, authoritative=False)

    with pytest.raises(PublishError, match="nacked") as raised:
        await broker.publish(by_name, b"{}", task_id="t-1")
    assert raised.value.task_id == "t-1"


async def test_500_concurrent_publishes_are_all_confirmed_and_consumed(
    broker: AmqpBroker,
) -> None:
    task_ids = [f"t-{n}" for n in range(500)]

    await asyncio.gather(*(broker.publish(TASK, b"{}", task_id=t) for t in task_ids))

    info = await broker.queue_info(TASK.task)
    assert info is not None and info.ready == 500
    deliveries = await _collect(broker, 500)
    assert sorted(d.correlation_id or "" for d in deliveries) == sorted(task_ids)
    assert len({d.message_id for d in deliveries}) == 500


async def test_a_raw_message_with_only_the_four_fields_is_delivered(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def keep(delivery: Delivery) -> None:
        received.put_nowait(delivery)

    await broker.consume([TASK], keep, prefetch=10)  # declares and binds the queue
    body = json.dumps({"id": "raw-1", "task": TASK.task, "args": [1], "kwargs": {}}).encode()
    exchange = await channel.get_exchange(broker.topology.exchange)
    await exchange.publish(aio_pika.Message(body), routing_key=TASK.task)

    delivery = await asyncio.wait_for(received.get(), 5.0)
    assert delivery.body == body
    assert delivery.routing_key == TASK.task
    assert delivery.correlation_id is None  # a plain client sets no properties
    message = TaskMessage.decode(delivery.body, correlation_id=delivery.correlation_id)
    assert (message.id, message.task, message.args) == ("raw-1", TASK.task, [1])
    await delivery.ack()


async def test_a_dropped_connection_is_restored_and_stale_acks_are_ignored(
    proxied: tuple[AmqpBroker, TcpProxy],
) -> None:
    broker, proxy = proxied
    received: asyncio.Queue[Delivery] = asyncio.Queue()
    await broker.publish(TASK, b"{}", task_id="t-1")
    await broker.consume([TASK], _keep_in(received), prefetch=10)
    stale = await asyncio.wait_for(received.get(), 5.0)

    proxy.drop()
    await stale.ack()  # its channel is gone: no error, and the broker requeues it
    await _publish_until_accepted(broker, "t-2")

    seen: dict[str, Delivery] = {}
    while set(seen) != {"t-1", "t-2"}:  # t-2 may come twice: re-sent after a lost confirm
        delivery = await asyncio.wait_for(received.get(), 10.0)
        seen[delivery.correlation_id or ""] = delivery
        await delivery.ack()
    assert seen["t-1"].redelivered is True

    with capture_logs() as logs:  # declarations were forgotten on reconnect
        await broker.publish(TASK, b"{}", task_id="t-3")
    assert [e for e in logs if e["event"] == "queue declared"]


async def test_a_consume_that_fails_after_a_reconnect_is_tried_again_until_it_works(
    proxied: tuple[AmqpBroker, TcpProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """aio-pika calls the consumer back once per reopened channel and drops the
    callback's error: a ``basic.consume`` refused then (here: the first two after the
    drop) must not leave the consumer connected and idle."""
    monkeypatch.setattr(amqp_consumer, "RESUBSCRIBE_PAUSE", 0.2)
    broker, proxy = proxied
    received: asyncio.Queue[Delivery] = asyncio.Queue()
    consumer = await broker.consume([TASK], _keep_in(received), prefetch=10)
    assert isinstance(consumer, amqp_consumer.AmqpConsumer)
    consume = consumer._consume
    refusals = 0

    async def refused_twice(subscription: Any) -> None:
        nonlocal refusals
        if refusals < 2:
            refusals += 1
            raise aiormq.exceptions.ChannelInvalidStateError("refused, as a test")
        await consume(subscription)

    monkeypatch.setattr(consumer, "_consume", refused_twice)
    with capture_logs() as logs:
        proxy.drop()
        await _publish_until_accepted(broker, "after")
        delivery = await asyncio.wait_for(received.get(), 10.0)
    await delivery.ack()
    assert delivery.correlation_id == "after" and refusals == 2
    said = [e["event"] for e in logs if "consum" in e["event"]]
    assert said == ["could not consume again after a reconnect"] * 2 + [
        "consuming again after a reconnect"
    ]


def _keep_in(received: asyncio.Queue[Delivery]) -> DeliveryHandler:
    async def keep(delivery: Delivery) -> None:
        received.put_nowait(delivery)

    return keep


async def _publish_until_accepted(broker: AmqpBroker, task_id: str, *, delay: float = 0) -> None:
    """Re-send with the same task id until confirmed, as PublishError's docstring allows:
    a publish racing the drop may fail before the reconnect."""
    for _ in range(50):
        try:
            await broker.publish(TASK, b"{}", task_id=task_id, delay=delay)
            return
        except PublishError:
            await asyncio.sleep(0.1)
    raise AssertionError(f"{task_id} was never confirmed")


async def test_a_message_rabbitmq_dead_lettered_itself_is_read_from_x_death(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    body = json.dumps({"id": "t-1", "task": TASK.task, "args": [], "kwargs": {}}).encode()
    await broker.publish(TASK, body, task_id="t-1")
    before = utcnow().replace(microsecond=0)  # x-death times are whole seconds
    queue = await channel.get_queue(broker.topology.queue_name(TASK.task), ensure=False)
    message = await queue.get(no_ack=False)
    await message.reject(requeue=False)  # RabbitMQ dead-letters it, with x-death

    (letter,) = await eventually(broker.dead_letters, lambda d: len(d) == 1)

    assert (letter.task_id, letter.task, letter.reason) == ("t-1", TASK.task, "rejected")
    assert letter.queue == broker.topology.queue_name(TASK.task)
    assert letter.dead_at is not None
    assert before <= letter.dead_at <= utcnow() + timedelta(seconds=1)
    assert [d.task_id for d in await broker.requeue_dead()] == ["t-1"]
    again = await queue.get(no_ack=False)
    assert again.body == body and again.correlation_id == "t-1"
    assert "x-death" not in again.headers
    await again.ack()


async def test_a_raw_message_in_the_dead_letter_queue_is_listed_left_by_requeue_and_purged(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    exchange = await channel.get_exchange(broker.topology.dead_exchange)
    await exchange.publish(aio_pika.Message(b"\x00 not a task"), routing_key="")

    (letter,) = await eventually(broker.dead_letters, lambda d: len(d) == 1)

    assert (letter.task_id, letter.task, letter.dead_at) == (None, None, None)
    assert (letter.reason, letter.queue, letter.body) == ("unknown", None, b"\x00 not a task")
    assert await broker.requeue_dead() == []
    assert await broker.purge_dead() == 1
    assert await broker.dead_letters() == []


# -- delay levels -----------------------------------------------------------------------


async def _declares(
    connection: aio_pika.abc.AbstractConnection, queue: str, **arguments: object
) -> bool:
    """Whether declaring ``queue`` with ``arguments`` passes: RabbitMQ refuses (406) any
    that differs from the existing queue's, so a pass proves them equal."""
    channel = await connection.channel()
    try:
        await channel.declare_queue(queue, durable=True, arguments=arguments)
    except aio_pika.exceptions.ChannelPreconditionFailed:
        return False
    await channel.close()
    return True


async def _exists(
    connection: aio_pika.abc.AbstractConnection, *, queue: str = "", exchange: str = ""
) -> bool:
    channel = await connection.channel()
    try:
        if queue:
            await channel.declare_queue(queue, passive=True)
        else:
            await channel.declare_exchange(exchange, passive=True)
    except aio_pika.exceptions.ChannelNotFoundEntity:
        return False
    await channel.close()
    return True


async def test_delay_levels_are_declared_up_to_the_highest_bit_as_quorum_queues_and_destroyed(
    broker: AmqpBroker, amqp_url: str
) -> None:
    t = broker.topology
    await broker.publish(TASK, b"{}", task_id="t-1", delay=0.5)  # 5 units = 0b101

    connection = await aio_pika.connect(amqp_url)
    try:
        for level in range(3):  # levels 0, 1 and 2: the bits it may pass through
            arguments = t.delay_queue_arguments(level)
            assert arguments["x-queue-type"] == "quorum"
            assert await _declares(connection, t.delay_queue(level), **arguments)
            too_short = {**arguments, "x-message-ttl": arguments["x-message-ttl"] - 1}
            assert not await _declares(connection, t.delay_queue(level), **too_short)
            assert await _exists(connection, exchange=t.delay_exchange(level))
        assert not await _exists(connection, queue=t.delay_queue(3))  # not needed yet
        (delivery,) = await _collect(broker, 1)
        assert delivery.correlation_id == "t-1"

        await broker.publish(TASK, b"{}", task_id="t-2", delay=3600)  # waits in level 15
        await broker.destroy([TASK.task])

        for level in range(DELAY_LEVELS):
            assert not await _exists(connection, queue=t.delay_queue(level))
            assert not await _exists(connection, exchange=t.delay_exchange(level))
    finally:
        await connection.close()


async def test_a_delay_queue_declared_with_other_arguments_raises_queue_mismatch(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    level_2 = broker.topology.delay_queue(2)
    await channel.declare_queue(level_2, durable=True, arguments={"x-message-ttl": 1000})

    with pytest.raises(QueueMismatch) as raised:
        await broker.publish(TASK, b"{}", task_id="t-1", delay=0.4)  # 4 units: level 2
    assert raised.value.queue == level_2
    await broker.publish(TASK, b"{}", task_id="t-2", delay=0.3)  # levels 0 and 1 are fine
    (delivery,) = await _collect(broker, 1)
    assert delivery.correlation_id == "t-2"


async def test_a_delay_level_deleted_behind_the_publishers_back_is_declared_again(
    broker: AmqpBroker, channel: aio_pika.abc.AbstractChannel
) -> None:
    await broker.publish(TASK, b"{}", task_id="t-1", delay=0.1)  # declares level 0, once
    (first,) = await _collect(broker, 1)
    await channel.queue_delete(broker.topology.delay_queue(0))

    await broker.publish(TASK, b"{}", task_id="t-2", delay=0.1)  # returned, declared, retried

    (second,) = await _collect(broker, 1)
    assert (first.correlation_id, second.correlation_id) == ("t-1", "t-2")


async def test_delayed_publishes_go_on_after_a_dropped_connection(
    proxied: tuple[AmqpBroker, TcpProxy],
) -> None:
    broker, proxy = proxied
    await broker.publish(TASK, b"{}", task_id="t-1", delay=0.3)
    proxy.drop()
    await _publish_until_accepted(broker, "t-2", delay=0.3)

    # t-1 waited in the broker through the drop; t-2 may come twice (a lost confirm).
    delivered = {d.correlation_id for d in await _collect(broker, 2)}
    while delivered != {"t-1", "t-2"}:
        delivered |= {d.correlation_id for d in await _collect(broker, 1)}
