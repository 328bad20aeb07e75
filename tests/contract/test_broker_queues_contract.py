"""The Broker contract (see ``test_broker_contract``): queue counts, queue types and
their mismatches, queues declared by a publish by name, connect and close."""

from __future__ import annotations

import re

import pytest

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Broker
from taskq.errors import QueueMismatch
from taskq.topology import QueueSpec, Topology
from tests.contract.broker_helpers import EMAILS, REPORTS, Inbox, counts


def _differing_arguments(topology: Topology) -> set[str]:
    classic, quorum = topology.queue_arguments("classic"), topology.queue_arguments("quorum")
    return {key for key in classic.keys() | quorum.keys() if classic.get(key) != quorum.get(key)}


async def test_queue_info_counts_ready_messages_and_consumers(broker: Broker) -> None:
    assert await broker.queue_info(EMAILS.task) is None

    await broker.publish(EMAILS, b"{}", task_id="t-1")
    await broker.publish(EMAILS, b"{}", task_id="t-2")
    info = await broker.queue_info(EMAILS.task)
    assert info is not None
    assert (info.name, info.ready, info.consumers) == (
        broker.topology.queue_name(EMAILS.task),
        2,
        0,
    )

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=1)
    held = await inbox.get()
    assert await counts(broker, EMAILS.task, (1, 1)) == (1, 1)  # unacked: not ready
    await held.ack()


async def test_queue_info_counts_unacked_deliveries_where_the_broker_can_tell(
    broker: Broker,
) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    inbox = Inbox()
    consumer = await broker.consume([EMAILS], inbox, prefetch=1)
    held = await inbox.get()
    await consumer.cancel()  # a cancelled consumer still holds what it was given
    info = await broker.queue_info(EMAILS.task)
    assert info is not None
    # A passive declare (AMQP) does not report it; the management API does.
    assert info.unacked == (None if isinstance(broker, AmqpBroker) else 1)
    await held.ack()


async def test_dead_queue_info_counts_the_dead_letters(broker: Broker) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=1)
    delivery = await inbox.get()
    await broker.dead_letter(delivery, "malformed task message")
    await delivery.ack()

    info = await broker.dead_queue_info()

    assert info is not None
    assert (info.name, info.ready, info.consumers) == (broker.topology.dead_queue, 1, 0)


async def test_declaring_another_queue_type_raises_queue_mismatch_and_the_broker_stays_usable(
    broker: Broker,
) -> None:
    classic = QueueSpec(EMAILS.task, queue_type="classic")
    await broker.publish(classic, b"{}", task_id="t-1")
    queue = broker.topology.queue_name(EMAILS.task)

    with pytest.raises(QueueMismatch) as raised:
        await broker.publish(QueueSpec(EMAILS.task, queue_type="quorum"), b"{}", task_id="t-2")
    assert raised.value.queue == queue
    assert queue in str(raised.value)
    named = re.search(r"inequivalent arg '([^']+)'", raised.value.detail)
    assert named is not None, raised.value.detail
    assert named[1] in _differing_arguments(broker.topology)
    with pytest.raises(QueueMismatch):
        await broker.consume([QueueSpec(EMAILS.task, queue_type="quorum")], Inbox(), prefetch=1)

    await broker.publish(classic, b"{}", task_id="t-3")
    await broker.publish(REPORTS, b"{}", task_id="t-4")
    inbox = Inbox()
    await broker.consume([classic, REPORTS], inbox, prefetch=10)
    delivered = await inbox.take(3)
    assert sorted(d.correlation_id or "" for d in delivered) == ["t-1", "t-3", "t-4"]
    for delivery in delivered:
        await delivery.ack()


async def test_a_publish_by_name_only_uses_an_existing_classic_queue(broker: Broker) -> None:
    classic = QueueSpec(EMAILS.task, queue_type="classic")
    await broker.publish(classic, b"{}", task_id="t-1")

    by_name = QueueSpec(EMAILS.task, queue_type="quorum", authoritative=False)
    await broker.publish(by_name, b"{}", task_id="t-2")

    inbox = Inbox()
    await broker.consume([classic], inbox, prefetch=10)  # still classic: no mismatch
    delivered = await inbox.take(2)
    assert [d.correlation_id for d in delivered] == ["t-1", "t-2"]
    assert [d.delivery_count for d in delivered] == [None, None]  # classic counts nothing
    for delivery in delivered:
        await delivery.ack()


async def test_a_publish_by_name_only_declares_a_missing_queue(broker: Broker) -> None:
    await broker.publish(QueueSpec(EMAILS.task, authoritative=False), b"{}", task_id="t-1")

    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)  # declared as a quorum queue
    delivery = await inbox.get()
    assert delivery.delivery_count == 0
    await delivery.ack()


async def test_connect_and_close_are_idempotent_and_messages_outlive_a_close(
    broker: Broker,
) -> None:
    await broker.connect()
    await broker.publish(EMAILS, b"{}", task_id="t-1")
    await broker.close()
    await broker.close()

    await broker.connect()
    info = await broker.queue_info(EMAILS.task)
    assert info is not None and info.ready == 1
