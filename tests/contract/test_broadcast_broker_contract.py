"""The broker contract for broadcast tasks, on MemoryBroker and on RabbitMQ: a call reaches
every worker consuming the task at that moment, once each, and none that is not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Broker
from taskq.brokers.memory import MemoryBroker
from taskq.errors import PublishError
from taskq.topology import QueueSpec, Topology
from tests.contract.test_broker_contract import Inbox

CACHE = "cache.clear"
OTHER = "config.reload"
EMAILS = QueueSpec("emails.send")


@pytest_asyncio.fixture(params=["memory", "amqp"])
async def broker(request: pytest.FixtureRequest, exchange: str) -> AsyncIterator[Broker]:
    topology = Topology(exchange)
    if request.param == "amqp":
        broker: Broker = AmqpBroker(request.getfixturevalue("amqp_url"), topology)
    else:
        broker = MemoryBroker(topology)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.destroy([CACHE, OTHER, EMAILS.task])
        await broker.close()


async def test_a_broadcast_reaches_every_consuming_worker_once(broker: Broker) -> None:
    inboxes = {worker: Inbox() for worker in ("host-1", "host-2", "host-3")}
    for worker, inbox in inboxes.items():
        await broker.consume_broadcast([CACHE], worker, inbox, prefetch=4)

    assert await broker.publish_broadcast(CACHE, b'{"n": 1}', task_id="call-1") is True

    for worker, inbox in inboxes.items():
        delivery = await inbox.get()
        assert delivery.body == b'{"n": 1}'
        assert (delivery.task, delivery.routing_key) == (CACHE, CACHE)
        assert delivery.correlation_id == "call-1" and delivery.message_id
        assert delivery.queue == broker.topology.broadcast_queue(CACHE, worker)
        await delivery.ack()
    for inbox in inboxes.values():
        await inbox.assert_nothing_more()


async def test_a_broadcast_that_reaches_no_worker_raises_unless_not_required(
    broker: Broker,
) -> None:
    with pytest.raises(PublishError, match="reached no worker") as caught:
        await broker.publish_broadcast(CACHE, b"{}", task_id="call-1")
    assert caught.value.task_id == "call-1"
    assert await broker.publish_broadcast(CACHE, b"{}", task_id="call-2", required=False) is False


async def test_a_worker_gets_only_what_is_published_while_it_consumes(broker: Broker) -> None:
    early, late = Inbox(), Inbox()
    early_consumer = await broker.consume_broadcast([CACHE], "early", early, prefetch=4)
    await broker.publish_broadcast(CACHE, b'{"n": 1}', task_id="call-1")
    await broker.consume_broadcast([CACHE], "late", late, prefetch=4)
    await (await early.get()).ack()
    await late.assert_nothing_more()  # it was not there when call-1 went out

    await early_consumer.cancel()
    await early_consumer.close()
    await broker.publish_broadcast(CACHE, b'{"n": 2}', task_id="call-2")
    delivery = await late.get()
    assert delivery.correlation_id == "call-2"
    await delivery.ack()
    await early.assert_nothing_more()

    # Once every worker is gone, nothing is reached: no queue keeps calls for later.
    await broker.close()
    with pytest.raises(PublishError):
        await broker.publish_broadcast(CACHE, b"{}", task_id="call-3")


async def test_a_requeued_broadcast_comes_back_to_the_same_worker(broker: Broker) -> None:
    mine, other = Inbox(), Inbox()
    await broker.consume_broadcast([CACHE], "mine", mine, prefetch=4)
    await broker.consume_broadcast([CACHE], "other", other, prefetch=4)
    await broker.publish_broadcast(CACHE, b"{}", task_id="call-1")
    await (await other.get()).ack()
    first = await mine.get()
    await first.requeue()
    again = await mine.get()
    assert again.correlation_id == "call-1" and again.redelivered
    await again.ack()
    await other.assert_nothing_more()


async def test_broadcast_tasks_and_task_queues_stay_apart(broker: Broker) -> None:
    cache, other, emails = Inbox(), Inbox(), Inbox()
    await broker.consume_broadcast([CACHE, OTHER], "w", cache, prefetch=4)
    await broker.consume([EMAILS], emails, prefetch=4)
    await broker.publish_broadcast(OTHER, b'{"other": 1}', task_id="call-1")
    await broker.publish(EMAILS, b'{"email": 1}', task_id="task-1")

    delivery = await cache.get()
    assert (delivery.task, delivery.correlation_id) == (OTHER, "call-1")
    await delivery.ack()
    task = await emails.get()
    assert task.correlation_id == "task-1"
    await task.ack()
    for inbox in (cache, other, emails):
        await inbox.assert_nothing_more()
