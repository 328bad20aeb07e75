"""The Broker contract (see ``test_broker_contract``): publishing many at once."""

from __future__ import annotations

import asyncio

import pytest

from taskq.brokers.base import Broker
from taskq.brokers.memory import MemoryBroker
from taskq.errors import ConfigurationError, QueueMismatch
from taskq.topology import QueueSpec
from tests.contract.broker_helpers import EMAILS, REPORTS, Inbox, counts, task_body


async def test_publish_many_confirms_each_message_and_keeps_their_order(broker: Broker) -> None:
    messages = [(f"t-{n}", task_body(EMAILS, f"t-{n}")) for n in range(5)]

    outcomes = await broker.publish_many(EMAILS, messages)

    assert outcomes == [None] * 5
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivered = await inbox.take(5)
    assert [(d.correlation_id, d.body) for d in delivered] == messages
    assert all(d.routing_key == EMAILS.task for d in delivered)
    assert len({d.message_id for d in delivered}) == 5 and all(d.message_id for d in delivered)
    for delivery in delivered:
        await delivery.ack()


async def test_publish_many_of_nothing_publishes_and_declares_nothing(broker: Broker) -> None:
    assert await broker.publish_many(EMAILS, []) == []
    assert await broker.queue_info(EMAILS.task) is None


async def test_publish_many_publishes_a_batch_larger_than_its_window(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.brokers.amqp.PUBLISH_WINDOW", 7)  # three windows and a bit
    messages = [(f"t-{n}", b"{}") for n in range(23)]

    assert await broker.publish_many(EMAILS, messages) == [None] * 23

    assert await counts(broker, EMAILS.task, (23, 0)) == (23, 0)
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=30)
    delivered = await inbox.take(23)
    assert [d.correlation_id for d in delivered] == [task_id for task_id, _ in messages]
    for delivery in delivered:
        await delivery.ack()


async def test_publish_many_with_a_delay_holds_every_message_back(broker: Broker) -> None:
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    started = asyncio.get_running_loop().time()

    outcomes = await broker.publish_many(EMAILS, [("t-1", b"{}"), ("t-2", b"{}")], delay=0.5)

    assert outcomes == [None, None]
    delivered = await inbox.take(2)
    assert asyncio.get_running_loop().time() - started >= 0.45
    assert sorted(d.correlation_id or "" for d in delivered) == ["t-1", "t-2"]
    for delivery in delivered:
        await delivery.ack()


async def test_publish_many_refuses_before_publishing_a_delay_too_long_or_another_queue_type(
    broker: Broker,
) -> None:
    with pytest.raises(ConfigurationError):
        await broker.publish_many(EMAILS, [("t-1", b"{}")], delay=10**12)
    classic = QueueSpec(EMAILS.task, queue_type="classic")
    await broker.publish(classic, b"{}", task_id="t-0")

    with pytest.raises(QueueMismatch):
        await broker.publish_many(EMAILS, [("t-1", b"{}"), ("t-2", b"{}")])

    assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)


async def test_publish_many_declares_a_queue_deleted_behind_its_back_again(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-0")  # declares the queue, once
    await delete_queue_behind_its_back(broker, EMAILS.task, request)

    outcomes = await broker.publish_many(EMAILS, [("t-1", b"{}"), ("t-2", b"{}")])

    assert outcomes == [None, None]
    assert await counts(broker, EMAILS.task, (2, 0)) == (2, 0)  # t-0 went with its queue


async def delete_queue_behind_its_back(
    broker: Broker, task: str, request: pytest.FixtureRequest
) -> None:
    """Another client deletes a task queue the broker declared (an operator, a script):
    the broker still believes it declared."""
    name = broker.topology.queue_name(task)
    if isinstance(broker, MemoryBroker):
        del broker._queues[name]
        return
    import aio_pika

    connection = await aio_pika.connect(request.getfixturevalue("amqp_url"))
    try:
        channel = await connection.channel()
        await channel.queue_delete(name)
    finally:
        await connection.close()


async def test_publish_many_carries_bodies_larger_than_a_frame_intact(broker: Broker) -> None:
    # 300 KB each: several body frames per message (RabbitMQ's frame_max is 128 KiB), and
    # more than one write's worth of bytes for the batch.
    bodies = [bytes([n]) * 300_000 for n in range(5)] + [b"{}"]
    messages = [(f"t-{n}", body) for n, body in enumerate(bodies)]

    assert await broker.publish_many(EMAILS, messages) == [None] * 6

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivered = await inbox.take(6)
    assert [(d.correlation_id, d.body) for d in delivered] == messages
    for delivery in delivered:
        await delivery.ack()


async def test_publishes_awaited_together_each_get_their_own_outcome(broker: Broker) -> None:
    classic = QueueSpec(REPORTS.task, queue_type="classic")
    await broker.publish(classic, b"{}", task_id="r-0")

    outcomes = await asyncio.gather(
        *(broker.publish(EMAILS, b"{}", task_id=f"t-{n}") for n in range(20)),
        broker.publish(REPORTS, b"{}", task_id="r-1"),  # the queue is classic: refused
        return_exceptions=True,
    )

    assert outcomes[:20] == [None] * 20
    assert isinstance(outcomes[20], QueueMismatch)
    assert await counts(broker, EMAILS.task, (20, 0)) == (20, 0)
    assert await counts(broker, REPORTS.task, (1, 0)) == (1, 0)
