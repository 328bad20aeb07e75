"""A send caught by its node's death or by a nack, published again (issue 17): with
several nodes it does not raise while another node answers within the send timeout.

"Nodes" are proxies in front of the one shared RabbitMQ (tests/broker_nodes.py); the
three-node cluster is in tests/faults/test_cluster.py.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aio_pika
import pytest
from structlog.testing import capture_logs

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.amqp_failover import drop_nacking_channel, pause, worth_retrying
from taskq.errors import PublishError
from taskq.topology import QueueSpec, Topology
from tests.broker_nodes import proxies as proxies  # a fixture, used by name
from tests.faults.proxy import FaultProxy
from tests.helpers import eventually

TASK = QueueSpec("failover.job")


async def _drain(amqp_url: str, queue: str) -> Counter[str]:
    """Every message in ``queue`` taken off it, counted by task id."""
    seen: Counter[str] = Counter()
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=500)
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count or 0
        if count:
            async with declared.iterator(no_ack=True) as messages:
                async for message in messages:
                    seen[message.correlation_id or ""] += 1
                    if sum(seen.values()) == count:
                        break
    return seen


async def _depth(amqp_url: str, queue: str) -> int:
    async with await aio_pika.connect(amqp_url) as connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def test_sends_in_flight_when_their_node_dies_return_and_reach_the_queue(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    """Given many publishes awaiting their confirms through node 0, when node 0 dies
    they all return without an error, and every task is in the queue; those node 0 had
    taken twice, as their confirms were lost with it (the store's create-once makes
    that harmless)."""
    broker = AmqpBroker(
        [proxy.url(amqp_url) for proxy in proxies[:2]], Topology(exchange), publish_timeout=10.0
    )
    ids = [f"t-{n:05d}" for n in range(3000)]
    try:
        await broker.connect()
        await broker.publish(TASK, b"{}", task_id="warm-up")  # the queue is declared
        # The broker takes the messages, their confirms never come back: all in flight.
        proxies[0].stall(upstream=False)
        sending = asyncio.create_task(
            broker.publish_many(TASK, [(task_id, b"{}") for task_id in ids])
        )
        queue = broker.topology.queue_name(TASK.task)
        await eventually(lambda: _depth(amqp_url, queue), lambda depth: depth > 1000)
        with capture_logs() as logs:
            proxies[0].refuse()
            outcomes = await sending
        assert outcomes == [None] * len(ids)
        assert any(e["event"] == "publish failed over" for e in logs)
        seen = await _drain(amqp_url, queue)
        assert set(seen) == {*ids, "warm-up"}  # none lost
        # Those taken by node 0 whose confirms died with it were published again.
        assert max(seen.values()) == 2
    finally:
        proxies[0].resume()
        await broker.destroy([TASK.task])
        await broker.close()


async def test_a_nacked_publish_is_published_again_on_a_fresh_channel(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    """A nack closes the channel it came on (rabbitmq-server #15333: such a channel can
    be nacked for the rest of its life) and the publish goes out again on a new one."""
    topology = Topology(exchange)
    queue = topology.queue_name(TASK.task)
    # A full queue that rejects publishes: a nack. Sent by name only, the task uses
    # the queue as it is.
    spec = QueueSpec(TASK.task, authoritative=False)
    async with await aio_pika.connect(amqp_url) as direct:
        channel = await direct.channel()
        await channel.declare_queue(
            queue,
            durable=True,
            # Classic: a quorum queue takes one message more than its limit (3.10.8).
            arguments={
                "x-queue-type": "classic",
                "x-max-length": 1,
                "x-overflow": "reject-publish",
            },
        )
    broker = AmqpBroker(
        [proxy.url(amqp_url) for proxy in proxies[:2]], topology, publish_timeout=10.0
    )
    try:
        await broker.publish(spec, b"{}", task_id="fills-it")
        publisher = broker._publisher
        assert publisher is not None
        first = await publisher.channel.get_underlay_channel()

        async def make_room() -> None:
            await asyncio.sleep(0.3)  # after the first nack
            await _drain(amqp_url, queue)

        with capture_logs() as logs:
            room = asyncio.create_task(make_room())
            await broker.publish(spec, b"{}", task_id="nacked-first")
            await room
        retries = [e for e in logs if e["event"] == "publish failed over"]
        assert retries and "DeliveryError" in retries[0]["error"]
        assert first.is_closed
        assert await publisher.channel.get_underlay_channel() is not first
        assert set(await _drain(amqp_url, queue)) == {"nacked-first"}
    finally:
        await broker.destroy([TASK.task])
        await broker.close()


async def test_a_nack_that_lasts_past_the_send_timeout_raises(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    topology = Topology(exchange)
    queue = topology.queue_name(TASK.task)
    spec = QueueSpec(TASK.task, authoritative=False)
    async with await aio_pika.connect(amqp_url) as direct:
        channel = await direct.channel()
        await channel.declare_queue(
            queue,
            durable=True,
            # Classic: a quorum queue takes one message more than its limit (3.10.8).
            arguments={
                "x-queue-type": "classic",
                "x-max-length": 1,
                "x-overflow": "reject-publish",
            },
        )
    broker = AmqpBroker(
        [proxy.url(amqp_url) for proxy in proxies[:2]], topology, publish_timeout=1.5
    )
    try:
        await broker.publish(spec, b"{}", task_id="fills-it")
        started = asyncio.get_running_loop().time()
        with pytest.raises(PublishError, match="nacked"):
            await broker.publish(spec, b"{}", task_id="never-fits")
        assert asyncio.get_running_loop().time() - started < 3.0
    finally:
        await broker.destroy([TASK.task])
        await broker.close()


def test_what_is_worth_another_try() -> None:
    import aiormq.exceptions as amqp

    assert worth_retrying(amqp.DeliveryError(None, None))  # a nack
    assert worth_retrying(amqp.ChannelInvalidStateError("closed"))
    assert worth_retrying(amqp.ConnectionClosed(320, "CONNECTION_FORCED"))
    assert worth_retrying(ConnectionResetError())
    assert not worth_retrying(None)
    returned = amqp.PublishError.__new__(amqp.PublishError)  # a return: redeclared instead
    assert not worth_retrying(returned)
    assert not worth_retrying(amqp.ChannelPreconditionFailed("406"))
    assert not worth_retrying(amqp.ChannelNotFoundEntity("404"))
    assert not worth_retrying(ValueError("ours"))
    assert [pause(n, 10.0) for n in (1, 2, 3, 4, 5, 6)] == [0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert pause(3, 0.01) == 0.01


async def test_a_nacking_channel_whose_close_is_cancelled_under_it_counts_as_closed() -> None:
    """aiormq cancels a channel's close when the connection dies during it, and the close
    raises that cancel: the channel is gone, as asked, and the send fails over instead
    of raising ``CancelledError`` (the cluster fault scenario met it once). A cancel of
    the caller's own task still goes through."""

    class Closing:
        is_closed = False

        async def close(self) -> None:
            await asyncio.sleep(0)
            raise asyncio.CancelledError  # what aiormq's TaskWrapper re-raises

    await drop_nacking_channel(Closing())  # type: ignore[arg-type]

    class Stuck:
        is_closed = False

        def __init__(self) -> None:
            self.entered = asyncio.Event()  # its own: the close below has begun

        async def close(self) -> None:
            self.entered.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                raise asyncio.CancelledError from None  # the same cancel, re-raised

    stuck = Stuck()
    closing = asyncio.create_task(drop_nacking_channel(stuck))  # type: ignore[arg-type]
    await asyncio.wait_for(stuck.entered.wait(), 5)
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
