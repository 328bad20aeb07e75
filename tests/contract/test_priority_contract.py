"""Priorities, one suite for both brokers: what a priority queue delivers first, what a
message keeps of its priority on the way (a delay, a dead letter and its requeue), and
what a priority task's queue is declared with.

Each test runs on the MemoryBroker and on RabbitMQ (3.10 here: a priority task's queue
is classic with ``x-max-priority``, quorum queues having no priorities there).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from taskq.brokers.base import Broker
from taskq.errors import ConfigurationError, QueueMismatch
from taskq.topology import MAX_PRIORITY_ARGUMENT, QueueSpec
from tests.contract import test_broker_contract as contract
from tests.contract.test_broker_contract import EMAILS, Inbox, counts, task_body
from tests.helpers import eventually

#: The contract suite's fixture: every broker test here runs on both brokers.
broker = contract.broker

#: The task of the suite's other queue, as a priority task (the fixture deletes it).
URGENT = QueueSpec(EMAILS.task, max_priority=9)


async def publish(broker: Broker, sends: list[tuple[str, int]], **options: Any) -> None:
    """Each ``(task_id, priority)`` in turn, each confirmed before the next."""
    for task_id, priority in sends:
        await broker.publish(
            URGENT, task_body(URGENT, task_id), task_id=task_id, priority=priority, **options
        )


async def test_a_priority_queue_delivers_higher_priorities_first_and_fifo_within_a_level(
    broker: Broker,
) -> None:
    await publish(broker, [("a", 0), ("b", 5), ("c", 0), ("d", 9), ("e", 5), ("f", 9)])

    inbox = Inbox()
    await broker.consume([URGENT], inbox, prefetch=10)
    delivered = await inbox.take(6)

    assert [(d.correlation_id, d.priority) for d in delivered] == [
        ("d", 9),
        ("f", 9),
        ("b", 5),
        ("e", 5),
        ("a", 0),
        ("c", 0),
    ]
    for delivery in delivered:
        await delivery.ack()


async def test_sends_of_several_priorities_awaited_together_each_keep_their_own(
    broker: Broker,
) -> None:
    # One turn of the event loop: the AMQP broker batches these by (queue, delay, priority).
    await asyncio.gather(
        *(
            broker.publish(URGENT, task_body(URGENT, f"t-{n}"), task_id=f"t-{n}", priority=n % 3)
            for n in range(6)
        )
    )

    inbox = Inbox()
    await broker.consume([URGENT], inbox, prefetch=10)
    delivered = await inbox.take(6)

    assert [(d.correlation_id, d.priority) for d in delivered] == [
        ("t-2", 2),
        ("t-5", 2),
        ("t-1", 1),
        ("t-4", 1),
        ("t-0", 0),
        ("t-3", 0),
    ]
    for delivery in delivered:
        await delivery.ack()


async def test_a_delayed_message_keeps_its_priority_when_it_reaches_the_queue(
    broker: Broker,
) -> None:
    await publish(broker, [("low-1", 0), ("low-2", 0)])
    await publish(broker, [("late", 9)], delay=0.2)
    await eventually(lambda: counts(broker, URGENT.task, (3, 0)), lambda found: found == (3, 0))

    inbox = Inbox()
    await broker.consume([URGENT], inbox, prefetch=10)
    delivered = await inbox.take(3)

    assert [(d.correlation_id, d.priority) for d in delivered] == [
        ("late", 9),
        ("low-1", 0),
        ("low-2", 0),
    ]
    for delivery in delivered:
        await delivery.ack()


async def test_a_dead_letter_keeps_its_priority_and_its_requeue_publishes_it_again(
    broker: Broker,
) -> None:
    await publish(broker, [("dead", 7)])
    inbox = Inbox()
    consumer = await broker.consume([URGENT], inbox, prefetch=1)
    delivery = await inbox.get()
    await broker.dead_letter(delivery, "task raised E: boom")
    await delivery.ack()
    await consumer.close()

    [letter] = await broker.dead_letters()
    assert (letter.task_id, letter.priority) == ("dead", 7)

    await publish(broker, [("low-1", 0), ("low-2", 0)])

    async def to_urgent(task_id: str, task: str) -> QueueSpec:
        return URGENT

    assert [d.task_id for d in await broker.requeue_dead(prepare=to_urgent)] == ["dead"]
    inbox = Inbox()
    await broker.consume([URGENT], inbox, prefetch=10)
    delivered = await inbox.take(3)
    assert [(d.correlation_id, d.priority) for d in delivered] == [
        ("dead", 7),
        ("low-1", 0),
        ("low-2", 0),
    ]
    for delivery in delivered:
        await delivery.ack()


async def test_a_priority_task_queue_is_classic_with_x_max_priority_where_quorum_has_none(
    broker: Broker,
) -> None:
    # RabbitMQ 3.10 and the memory broker: quorum queues without priorities.
    assert broker.quorum_priority_levels() is None
    assert broker.declared_queue_type(URGENT) == "classic"
    assert broker.queue_arguments(URGENT) == {
        **broker.topology.queue_arguments("classic"),
        MAX_PRIORITY_ARGUMENT: 9,
    }
    await publish(broker, [("t-1", 3)])

    # The broker holds it with that argument: the same queue without it is refused.
    with pytest.raises(QueueMismatch) as raised:
        await broker.publish(QueueSpec(URGENT.task, queue_type="classic"), b"{}", task_id="t-2")
    assert MAX_PRIORITY_ARGUMENT in raised.value.detail
    await publish(broker, [("t-3", 1)])  # and stays usable
    assert await counts(broker, URGENT.task, (2, 0)) == (2, 0)


async def test_a_task_queue_declared_before_it_had_priorities_is_refused_with_the_fix(
    broker: Broker,
) -> None:
    await broker.publish(EMAILS, b"{}", task_id="t-1")  # a quorum queue, no priorities

    with pytest.raises(QueueMismatch) as raised:
        await publish(broker, [("t-2", 5)])

    queue = broker.topology.queue_name(URGENT.task)
    assert raised.value.queue == queue
    assert f"delete_queue {queue}" in str(raised.value)
    assert "max_priority" in str(raised.value)
    with pytest.raises(QueueMismatch):
        await broker.consume([URGENT], Inbox(), prefetch=1)
    assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)  # nothing else was sent


async def test_a_requeued_message_of_a_priority_queue_goes_back_ahead_of_its_level(
    broker: Broker,
) -> None:
    await publish(broker, [("low", 0), ("high-1", 9), ("high-2", 9)])
    inbox = Inbox()
    consumer = await broker.consume([URGENT], inbox, prefetch=1)
    first = await inbox.get()
    assert first.correlation_id == "high-1"

    await first.requeue()

    again = await inbox.get()
    assert (again.correlation_id, again.priority, again.redelivered) == ("high-1", 9, True)
    await again.ack()
    await consumer.close()


@pytest.mark.parametrize("priority", [-1, 10, True, 2.0])
async def test_a_priority_out_of_range_is_refused_before_anything_is_sent(
    app: Any, priority: Any
) -> None:
    @app.task(name="prio.urgent", max_priority=9)
    async def urgent() -> None: ...

    @app.task(name="prio.plain")
    async def plain() -> None: ...

    with pytest.raises(ConfigurationError, match="priorit"):
        await urgent.send(priority=priority)
    with pytest.raises(ConfigurationError, match="priorit"):
        await app.send_many("prio.urgent", [((), {})], priority=priority)
    with pytest.raises(ConfigurationError, match="max_priority"):
        await plain.send(priority=1)

    for name in ("prio.urgent", "prio.plain"):
        assert await app.broker.queue_info(name) is None  # not even declared
