"""Delayed publishes, part of the Broker contract: on MemoryBroker and on RabbitMQ.

A delayed message waits in the broker, not in the client, then reaches its task's queue
like any other; a long delay never holds up a shorter one. Bounds on timing are
generous: they tell a delay honoured from one ignored, not a fast machine from a slow
one (RabbitMQ measured here: 5-15 ms late).
"""

from __future__ import annotations

import json
import math
import time

import pytest

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Broker
from taskq.errors import ConfigurationError
from taskq.topology import MAX_DELAY, QueueSpec, delay_routing_key
from tests.contract import test_broker_contract as contract
from tests.contract.test_broker_contract import EMAILS, Inbox, counts

#: The contract suite's fixture: every test here runs on both brokers.
broker = contract.broker


async def test_a_delayed_message_arrives_after_its_delay_and_not_before(broker: Broker) -> None:
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)

    started = time.monotonic()
    await broker.publish(EMAILS, b'{"n": 1}', task_id="t-1", delay=1.5)
    delivery = await inbox.get(timeout=5.0)

    assert 1.2 <= time.monotonic() - started < 5.0
    assert delivery.body == b'{"n": 1}'
    assert delivery.correlation_id == "t-1"
    assert delivery.task == EMAILS.task
    assert delivery.queue == broker.topology.queue_name(EMAILS.task)
    assert delivery.routing_key == delay_routing_key(15, EMAILS.task)  # its bits, as sent
    assert delivery.redelivered is False
    assert delivery.delivery_count == 0
    await delivery.ack()


async def test_a_long_delay_does_not_hold_up_a_shorter_one_sent_after_it(broker: Broker) -> None:
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)

    await broker.publish(EMAILS, b"{}", task_id="t-hour", delay=3600)
    started = time.monotonic()
    await broker.publish(EMAILS, b"{}", task_id="t-second", delay=1)
    delivery = await inbox.get(timeout=5.0)

    assert delivery.correlation_id == "t-second"
    assert 0.8 <= time.monotonic() - started < 5.0
    await delivery.ack()
    await inbox.assert_nothing_more()  # the hour stays in its level; destroy removes it


async def test_delays_sent_in_reverse_order_arrive_in_delay_order(broker: Broker) -> None:
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)

    # 0.6 s apart: a loaded broker can stall a quorum queue for a few tenths of a second.
    for delay in (1.5, 0.9, 0.3):
        await broker.publish(EMAILS, b"{}", task_id=f"t-{delay}", delay=delay)
    delivered = await inbox.take(3)

    assert [d.correlation_id for d in delivered] == ["t-0.3", "t-0.9", "t-1.5"]
    for delivery in delivered:
        await delivery.ack()


async def test_a_delayed_message_waits_in_the_broker_not_in_the_client(
    broker: Broker, request: pytest.FixtureRequest
) -> None:
    consumer = await broker.consume([EMAILS], Inbox(), prefetch=10)
    await broker.publish(EMAILS, b"{}", task_id="t-1", delay=1.0)
    await consumer.close()
    await broker.close()

    # On RabbitMQ a new client, as after a restart: the old one held nothing of it. The
    # memory broker is its own server, whose queues outlive close().
    if isinstance(broker, AmqpBroker):
        amqp_url = request.getfixturevalue("amqp_url")
        client: Broker = AmqpBroker(amqp_url, broker.topology, publish_timeout=5.0)
    else:
        client = broker
    try:
        inbox = Inbox()
        await client.consume([EMAILS], inbox, prefetch=10)
        delivery = await inbox.get(timeout=5.0)
        assert delivery.correlation_id == "t-1"
        assert delivery.redelivered is False  # never handed out before it was due
        await delivery.ack()
    finally:
        if client is not broker:
            await client.close()


async def test_a_delayed_message_can_be_dead_lettered_and_requeued_like_any_other(
    broker: Broker,
) -> None:
    body = json.dumps({"id": "t-1", "task": EMAILS.task, "args": [], "kwargs": {}}).encode()
    await broker.publish(EMAILS, body, task_id="t-1", delay=0.2)
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivery = await inbox.get()

    # On RabbitMQ it carries the delay levels' x-death headers: they go along.
    await broker.dead_letter(delivery, "task raised")
    await delivery.ack()

    (letter,) = await broker.dead_letters()
    assert (letter.task_id, letter.task, letter.reason) == ("t-1", EMAILS.task, "task raised")
    assert letter.routing_key == delivery.routing_key  # with its bits
    assert letter.queue == broker.topology.queue_name(EMAILS.task)
    assert [d.task_id for d in await broker.requeue_dead()] == ["t-1"]
    again = await inbox.get()
    assert again.body == body
    await again.ack()


async def test_a_delayed_message_reaches_only_its_own_tasks_queue(broker: Broker) -> None:
    send = QueueSpec("send")  # the last word of EMAILS's name: a naive '#' would match
    try:
        inbox = Inbox()
        await broker.consume([send], inbox, prefetch=10)
        await broker.publish(EMAILS, b"{}", task_id="t-1", delay=0.2)

        assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)
        await inbox.assert_nothing_more()
    finally:
        await broker.destroy([send.task])


@pytest.mark.parametrize("delay", [MAX_DELAY + 1, math.inf, math.nan])
async def test_a_delay_beyond_max_delay_is_refused_before_anything_is_published(
    broker: Broker, delay: float
) -> None:
    with pytest.raises(ConfigurationError, match="at most"):
        await broker.publish(EMAILS, b"{}", task_id="t-1", delay=delay)
    assert await broker.queue_info(EMAILS.task) is None  # not even declared


async def test_a_delay_of_zero_or_less_is_no_delay(broker: Broker) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-zero", delay=0)
    await broker.publish(EMAILS, b"{}", task_id="t-past", delay=-5)

    info = await broker.queue_info(EMAILS.task)
    assert info is not None and info.ready == 2
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivered = await inbox.take(2)
    assert [d.routing_key for d in delivered] == [EMAILS.task, EMAILS.task]
    for delivery in delivered:
        await delivery.ack()
