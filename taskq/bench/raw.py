"""The raw baseline: what plain aio-pika does on the same broker, in the same run.

The same bytes as a taskq task message, persistent, through the same kind of
exchange (topic, ``mandatory``) into the same kind of queue (quorum, with taskq's
arguments from :meth:`Topology.queue_arguments`), with publisher confirms and
:data:`~taskq.bench.config.IN_FLIGHT` publishes pending; then consumed with manual
acks, one ``await message.ack()`` each, prefetch
:data:`~taskq.bench.config.RAW_PREFETCH`. No status store, no validation, no retries:
the ceiling of this client stack on this machine, which taskq's rates are read against.

:func:`measure_raw_latency` is the floor of taskq's publish -> start latency: the same
publishes at the latency phase's light rate, each timed from just before its publish
to its delivery to a consumer on a connection of its own (as a worker's is), with
nothing queued. It is what the broker's path costs (a quorum queue delivers a message
once its log entry is written) before taskq does anything.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass

import aio_pika
from aio_pika.abc import AbstractIncomingMessage, DeliveryMode, ExchangeType

from taskq.bench.config import IN_FLIGHT, RAW_PREFETCH, RAW_TASK, BenchConfig
from taskq.bench.latency import Percentiles
from taskq.bench.timing import paced, per_second, pipelined
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.amqp_options import connect_options
from taskq.errors import BrokerError
from taskq.message import CONTENT_TYPE, TaskMessage, new_task_id
from taskq.topology import Topology
from taskq.urls import split_urls

#: Seconds the consumer may go without a delivery before the phase gives up.
STALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class RawRates:
    publish_per_s: float
    consume_per_s: float


def raw_body(config: BenchConfig) -> bytes:
    """A task message as taskq would encode it for the no-op task: same size on the wire."""
    return TaskMessage(new_task_id(), RAW_TASK, [config.payload], {}).encode()


async def declare_raw(
    channel: aio_pika.abc.AbstractChannel, config: BenchConfig
) -> tuple[aio_pika.abc.AbstractExchange, aio_pika.abc.AbstractQueue]:
    """The run's exchange and the raw queue, as taskq declares a task's."""
    topology = Topology(config.exchange)
    exchange = await channel.declare_exchange(config.exchange, ExchangeType.TOPIC, durable=True)
    queue = await channel.declare_queue(
        topology.queue_name(RAW_TASK), durable=True, arguments=topology.queue_arguments("quorum")
    )
    await queue.bind(exchange, RAW_TASK)
    return exchange, queue


async def publish_raw(
    exchange: aio_pika.abc.AbstractExchange, body: bytes, message_id: str | None = None
) -> None:
    """One persistent, mandatory publish, as taskq's, returning on its confirm."""
    message = aio_pika.Message(
        body,
        delivery_mode=DeliveryMode.PERSISTENT,
        content_type=CONTENT_TYPE,
        message_id=message_id or uuid.uuid4().hex,
    )
    await exchange.publish(message, RAW_TASK, mandatory=True, timeout=10)


async def measure_raw(config: BenchConfig, count: int) -> RawRates:
    """Publish ``count`` messages, then consume them all; both rates."""
    body = raw_body(config)
    url = split_urls(config.broker_url)[0]  # plain aio-pika: the first node of a list
    with amqp_errors(url):
        connection = await aio_pika.connect(url, timeout=10, **connect_options(url, None))
    try:
        with amqp_errors(url, publishing=True):
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange, queue = await declare_raw(channel, config)

            async def publish(_: int) -> None:
                await publish_raw(exchange, body)

            published = await pipelined(count, IN_FLIGHT, publish)
        with amqp_errors(url):
            consumed = await _consume(connection, queue.name, count)
    finally:
        await connection.close()
    return RawRates(per_second(count, published), per_second(count, consumed))


async def _consume(
    connection: aio_pika.abc.AbstractConnection, queue_name: str, count: int
) -> float:
    """Seconds from the first delivery to the last ack of ``count`` messages."""
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=RAW_PREFETCH)
    queue = await channel.get_queue(queue_name, ensure=False)
    done = asyncio.Event()
    acked = 0
    first: float | None = None  # callbacks run concurrently: only the first one sets it
    last = 0.0

    async def on_message(message: AbstractIncomingMessage) -> None:
        nonlocal acked, first, last
        if first is None:
            first = time.perf_counter()
        await message.ack()
        acked += 1
        last = time.perf_counter()
        if acked == count:
            done.set()

    tag = await queue.consume(on_message, no_ack=False)
    try:
        while not done.is_set():
            before = acked
            try:
                await asyncio.wait_for(done.wait(), STALL_TIMEOUT)
            except TimeoutError:
                if acked == before:
                    raise BrokerError(
                        f"bench: the raw consumer got nothing for {STALL_TIMEOUT:g}s "
                        f"({acked} of {count} acked)"
                    ) from None
    finally:
        await queue.cancel(tag)
        await channel.close()
    return last - (first or last)


async def measure_raw_latency(config: BenchConfig, count: int, rate: float) -> Percentiles:
    """``count`` raw publishes at ``rate`` a second, each on its schedule; from just
    before each publish to its delivery, in milliseconds."""
    body = raw_body(config)
    url = split_urls(config.broker_url)[0]
    options = connect_options(url, None)
    with amqp_errors(url):
        publisher = await aio_pika.connect(url, timeout=10, **options)
        consumer = await aio_pika.connect(url, timeout=10, **options)
    try:
        with amqp_errors(url, publishing=True):
            channel = await publisher.channel(publisher_confirms=True, on_return_raises=True)
            exchange, queue = await declare_raw(channel, config)
            await queue.purge()
        with amqp_errors(url):
            return await _time_deliveries(consumer, queue.name, exchange, body, count, rate)
    finally:
        await consumer.close()
        await publisher.close()


async def _time_deliveries(
    connection: aio_pika.abc.AbstractConnection,
    queue_name: str,
    exchange: aio_pika.abc.AbstractExchange,
    body: bytes,
    count: int,
    rate: float,
) -> Percentiles:
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=RAW_PREFETCH)
    queue = await channel.get_queue(queue_name, ensure=False)
    sent: dict[str, float] = {}
    took: list[float] = []
    done = asyncio.Event()

    async def on_message(message: AbstractIncomingMessage) -> None:
        arrived = time.perf_counter()
        at = sent.get(message.message_id or "")
        if at is not None:
            took.append((arrived - at) * 1000)
        await message.ack()
        if len(took) == count:
            done.set()

    async def publish(_: int) -> None:
        message_id = uuid.uuid4().hex
        sent[message_id] = time.perf_counter()
        await publish_raw(exchange, body, message_id)

    tag = await queue.consume(on_message, no_ack=False)
    try:
        await paced(count, rate, publish)
        try:
            await asyncio.wait_for(done.wait(), STALL_TIMEOUT)
        except TimeoutError:
            raise BrokerError(
                f"bench: the raw consumer got {len(took)} of {count} deliveries "
                f"within {STALL_TIMEOUT:g}s"
            ) from None
    finally:
        await queue.cancel(tag)
        await channel.close()
    return Percentiles.of(took)
