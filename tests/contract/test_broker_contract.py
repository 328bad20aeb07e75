"""The Broker contract, one suite for both implementations.

Each test runs on the in-process MemoryBroker and on RabbitMQ (AmqpBroker, skipped
without a broker unless TASKQ_REQUIRE_BROKER=1). The memory broker must behave like the
real one, so whatever passes here on memory can be trusted on RabbitMQ. The fixture
(``broker``) is in ``conftest.py``; the suite is split by concern: delivery here,
queues (``test_broker_queues_contract``), dead letters
(``test_broker_dead_letters_contract``) and ``publish_many``
(``test_broker_publish_many_contract``).
"""

from __future__ import annotations

import asyncio

import pytest

from taskq.brokers.base import Broker, Delivery, nonblocking
from taskq.topology import QueueSpec, QueueType
from tests.contract.broker_helpers import EMAILS, REPORTS, Inbox, counts

# Imported from here by other tests (their fixture and helpers, before the split).
from tests.contract.broker_helpers import task_body as task_body
from tests.contract.conftest import broker as broker


async def test_a_message_published_before_any_consumer_exists_is_kept(broker: Broker) -> None:
    await broker.publish(EMAILS, b'{"n": 1}', task_id="t-1")

    info = await broker.queue_info(EMAILS.task)
    assert info is not None and info.ready == 1

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivery = await inbox.get()
    assert delivery.body == b'{"n": 1}'
    await delivery.ack()


async def test_body_and_properties_arrive_intact(broker: Broker) -> None:
    body = '{"id": "t-1", "task": "emails.send", "args": ["é"], "kwargs": {}}'.encode()
    await broker.publish(EMAILS, body, task_id="t-1")
    await broker.publish(EMAILS, body, task_id="t-1")  # the same task sent twice

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    first, second = await inbox.take(2)

    for delivery in (first, second):
        assert delivery.body == body
        assert delivery.correlation_id == "t-1"
        assert delivery.routing_key == EMAILS.task
        assert delivery.task == EMAILS.task
        assert delivery.queue == broker.topology.queue_name(EMAILS.task)
        assert delivery.redelivered is False
        assert delivery.delivery_count == 0  # a quorum queue counts deliveries
        await delivery.ack()
    assert first.message_id and second.message_id
    assert first.message_id != second.message_id


async def test_an_acked_message_is_gone(broker: Broker) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    inbox = Inbox()
    consumer = await broker.consume([EMAILS], inbox, prefetch=10)

    await (await inbox.get()).ack()
    await consumer.close()

    info = await broker.queue_info(EMAILS.task)
    assert info is not None and info.ready == 0


async def test_a_requeued_message_is_delivered_again_marked_redelivered(broker: Broker) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)

    first = await inbox.get()
    await first.requeue()
    again = await inbox.get()

    assert again.correlation_id == "t-1"
    assert again.redelivered is True
    assert again.delivery_count == 1
    await again.ack()


@pytest.mark.parametrize(
    ("queue_type", "order"),
    [("classic", ["t-1", "t-1", "t-2"]), ("quorum", ["t-1", "t-2", "t-1"])],
)
async def test_a_requeued_message_goes_where_rabbitmq_puts_it(
    broker: Broker, queue_type: QueueType, order: list[str]
) -> None:
    # RabbitMQ 3.10: back near its old place in a classic queue, at the back of a
    # quorum queue (no delivery limit set). The memory broker follows the type.
    spec = QueueSpec(EMAILS.task, queue_type=queue_type)
    await broker.publish(spec, b"{}", task_id="t-1")
    await broker.publish(spec, b"{}", task_id="t-2")
    inbox = Inbox()
    await broker.consume([spec], inbox, prefetch=1)

    first = await inbox.get()
    await first.requeue()
    second = await inbox.get()
    await second.ack()
    third = await inbox.get()
    await third.ack()

    assert [d.correlation_id for d in (first, second, third)] == order


async def test_closing_a_consumer_redelivers_its_unsettled_messages_to_another(
    broker: Broker,
) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    first_inbox, second_inbox, third_inbox = Inbox(), Inbox(), Inbox()
    first = await broker.consume([EMAILS], first_inbox, prefetch=10)
    stale = await first_inbox.get()
    second = await broker.consume([EMAILS], second_inbox, prefetch=10)

    await first.close()
    redelivered = await second_inbox.get()
    assert redelivered.correlation_id == "t-1"
    assert redelivered.redelivered is True

    # Settling the stale delivery does nothing: above all, it must not ack the
    # redelivered one. Proof: closing the second consumer gives the message back again.
    await stale.ack()
    await stale.requeue()
    await second.close()
    await broker.consume([EMAILS], third_inbox, prefetch=10)
    last = await third_inbox.get()
    assert last.correlation_id == "t-1"
    assert last.delivery_count == 2
    await last.ack()


async def test_prefetch_caps_unsettled_deliveries(broker: Broker) -> None:
    for n in range(5):
        await broker.publish(EMAILS, b"{}", task_id=f"t-{n}")
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=2)

    held = await inbox.take(2)
    await inbox.assert_nothing_more()

    await held[0].ack()
    held.append(await inbox.get())
    await inbox.assert_nothing_more()

    assert [d.correlation_id for d in held] == ["t-0", "t-1", "t-2"]  # FIFO
    for delivery in held[1:]:
        await delivery.ack()


async def test_consumers_of_one_queue_share_its_messages(broker: Broker) -> None:
    first_inbox, second_inbox = Inbox(), Inbox()
    await broker.consume([EMAILS], first_inbox, prefetch=1)
    await broker.consume([EMAILS], second_inbox, prefetch=1)

    await broker.publish(EMAILS, b"{}", task_id="t-1")
    await broker.publish(EMAILS, b"{}", task_id="t-2")

    held = [await first_inbox.get(), await second_inbox.get()]
    assert sorted(d.correlation_id or "" for d in held) == ["t-1", "t-2"]
    for delivery in held:
        await delivery.ack()


async def test_handler_calls_overlap_up_to_the_prefetch(broker: Broker) -> None:
    for n in range(3):
        await broker.publish(EMAILS, b"{}", task_id=f"t-{n}")
    started: list[Delivery] = []
    all_started, release = asyncio.Event(), asyncio.Event()

    async def slow_handler(delivery: Delivery) -> None:
        started.append(delivery)
        if len(started) == 3:
            all_started.set()
        await release.wait()  # no call returns before all three have started

    await broker.consume([EMAILS], slow_handler, prefetch=3)
    await asyncio.wait_for(all_started.wait(), 5.0)
    release.set()
    for delivery in started:
        await delivery.ack()


async def test_a_nonblocking_handler_gets_every_delivery_once_in_order(broker: Broker) -> None:
    """A handler marked ``nonblocking`` may be awaited where the broker reads (RabbitMQ:
    no task per delivery); it still gets each message once, in the queue's order, and
    settles them as any handler's."""
    ids = [f"t-{n}" for n in range(50)]
    await broker.publish_many(EMAILS, [(task_id, b"{}") for task_id in ids])
    got: asyncio.Queue[Delivery] = asyncio.Queue()

    @nonblocking
    async def hand_on(delivery: Delivery) -> None:
        got.put_nowait(delivery)

    consumer = await broker.consume([EMAILS], hand_on, prefetch=100)
    held = [await asyncio.wait_for(got.get(), 5.0) for _ in ids]
    assert [d.correlation_id for d in held] == ids
    for delivery in held:
        await delivery.ack()
    await asyncio.sleep(0.1)
    assert got.empty()  # nothing twice
    await consumer.close()


async def test_a_cancelled_consumer_gets_nothing_new_but_can_settle_what_it_holds(
    broker: Broker,
) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    inbox = Inbox()
    consumer = await broker.consume([EMAILS], inbox, prefetch=10)
    held = await inbox.get()

    await consumer.cancel()
    await consumer.cancel()  # idempotent
    await broker.publish(EMAILS, b"{}", task_id="t-2")
    await inbox.assert_nothing_more()
    await held.ack()
    await consumer.close()

    # Only t-2 is left: the ack of t-1 held through the cancel went through.
    assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)


async def test_a_task_is_routed_only_to_its_own_queue(broker: Broker) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-email")
    await broker.publish(REPORTS, b"{}", task_id="t-report")

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivery = await inbox.get()
    assert delivery.correlation_id == "t-email"
    await inbox.assert_nothing_more()
    await delivery.ack()

    reports = await broker.queue_info(REPORTS.task)
    assert reports is not None and reports.ready == 1
