"""Acks sent several per frame (taskq.brokers.amqp_acks), and a worker's consumer on
RabbitMQ: ``basic.ack(multiple=True)`` under load, and consuming again after the broker
cancelled it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aio_pika
import pytest
import pytest_asyncio

from taskq import TaskQueue, TaskState, Worker
from taskq.brokers.amqp_acks import ChannelAcks
from taskq.brokers.amqp_consumer import AmqpConsumer
from tests.conftest import remove_app


class FakeChannel:
    """Records the ack and nack frames; a nack can be held back."""

    def __init__(self) -> None:
        self.frames: list[tuple[str, int, bool]] = []
        self.hold_nacks = asyncio.Event()
        self.hold_nacks.set()
        self.is_closed = False

    async def basic_ack(self, tag: int, multiple: bool = False, wait: bool = True) -> None:
        self.frames.append(("ack", tag, multiple))

    async def basic_nack(
        self, tag: int, multiple: bool = False, requeue: bool = True, wait: bool = True
    ) -> None:
        await self.hold_nacks.wait()
        self.frames.append(("nack", tag, multiple))


async def cut(*_: Any, **__: Any) -> None:
    """A frame whose connection was cut."""
    raise OSError("cut")


def acks_on(channel: FakeChannel, tags: range) -> ChannelAcks:
    acks = ChannelAcks(channel, timeout=5)  # type: ignore[arg-type]
    for tag in tags:
        acks.delivered(tag)
    return acks


async def test_acks_of_one_turn_below_every_open_delivery_go_as_one_multiple_ack() -> None:
    channel = FakeChannel()
    acks = acks_on(channel, range(1, 7))
    await asyncio.gather(acks.ack(2), acks.ack(1), acks.ack(3))
    assert channel.frames == [("ack", 3, True)]
    await asyncio.gather(acks.ack(5), acks.ack(6))  # 4 is still running
    assert channel.frames[1:] == [("ack", 5, False), ("ack", 6, False)]
    await acks.ack(4)
    assert channel.frames[3:] == [("ack", 4, False)]
    assert acks.sent == [1, 3]


async def test_a_requeue_on_its_way_is_never_covered_by_a_multiple_ack() -> None:
    channel = FakeChannel()
    acks = acks_on(channel, range(1, 4))
    channel.hold_nacks.clear()
    requeue = asyncio.ensure_future(acks.requeue(1))
    await asyncio.sleep(0)
    await asyncio.gather(acks.ack(2), acks.ack(3))
    assert channel.frames == [("ack", 2, False), ("ack", 3, False)]
    channel.hold_nacks.set()
    await requeue
    assert channel.frames[-1] == ("nack", 1, False)


async def test_a_requeue_that_failed_keeps_its_tag_out_of_every_later_multiple_ack() -> None:
    channel = FakeChannel()
    acks = acks_on(channel, range(1, 4))

    channel.basic_nack = cut  # type: ignore[method-assign]
    with pytest.raises(OSError):
        await acks.requeue(1)
    await asyncio.gather(acks.ack(2), acks.ack(3))
    assert channel.frames == [("ack", 2, False), ("ack", 3, False)]


async def test_a_failed_ack_frame_reaches_every_caller_of_its_turn() -> None:
    channel = FakeChannel()
    acks = acks_on(channel, range(1, 3))

    channel.basic_ack = cut  # type: ignore[method-assign]
    results = await asyncio.gather(acks.ack(1), acks.ack(2), return_exceptions=True)
    assert all(isinstance(r, OSError) for r in results)


@pytest_asyncio.fixture
async def rabbit_app(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[TaskQueue]:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange, publish_timeout=10)
    await app.connect()
    try:
        yield app
    finally:
        await remove_app(app, list(app.tasks), redis_url)


def consumer_of(worker: Worker) -> AmqpConsumer:
    consumer = worker._consumer
    assert isinstance(consumer, AmqpConsumer)
    return consumer


async def test_a_worker_acks_a_burst_of_short_tasks_in_few_multiple_acks(
    rabbit_app: TaskQueue,
) -> None:
    @rabbit_app.task(name="acks.noop")
    async def noop(n: int) -> int:
        return n

    handles = await asyncio.gather(*(noop.delay(n) for n in range(400)))
    async with Worker(rabbit_app, concurrency=50) as worker:
        assert [await h.result(timeout=30) for h in handles] == list(range(400))
        acks = consumer_of(worker)._acks
        assert acks is not None
        for _ in range(200):  # the last acks follow the last records
            if worker.tasks_done == 400:
                break
            await asyncio.sleep(0.05)
        multiple, single = acks.sent
        assert multiple > 0 and multiple + single < 400
    info = await rabbit_app.broker.queue_info(noop.name)
    assert info is not None and info.ready == 0


async def test_a_worker_consumes_again_after_the_broker_cancelled_its_consumer(
    rabbit_app: TaskQueue, amqp_url: str
) -> None:
    @rabbit_app.task(name="acks.echo")
    async def echo(n: int) -> int:
        return n

    async with Worker(rabbit_app, concurrency=4):
        assert await (await echo.delay(1)).result(timeout=20) == 1
        # Deleting the queue makes RabbitMQ cancel the worker's consumer.
        connection = await aio_pika.connect(amqp_url)
        async with connection, connection.channel() as channel:
            await channel.queue_delete(rabbit_app.topology.queue_name(echo.name))
        # The worker declares it again and consumes again. (Had a publish declared it
        # again at once, RabbitMQ 3.10 would never have sent the basic.cancel: seen.)
        for _ in range(100):
            info = await rabbit_app.broker.queue_info(echo.name)
            if info is not None and info.consumers == 1:
                break
            await asyncio.sleep(0.1)
        handle = await echo.delay(2)
        assert await handle.result(timeout=20) == 2
        status = await handle.status()
        assert status is not None and status.state is TaskState.SUCCEEDED
