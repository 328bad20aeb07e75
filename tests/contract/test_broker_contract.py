"""The Broker contract, one suite for both implementations.

Each test runs on the in-process MemoryBroker and on RabbitMQ (AmqpBroker, skipped
without a broker unless TASKQ_REQUIRE_BROKER=1). The memory broker must behave like the
real one, so whatever passes here on memory can be trusted on RabbitMQ.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Broker, Delivery
from taskq.brokers.memory import MemoryBroker
from taskq.errors import ConfigurationError, QueueMismatch, StoreError
from taskq.status import utcnow
from taskq.topology import (
    DEAD_AT_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    QueueSpec,
    QueueType,
    Topology,
)

EMAILS = QueueSpec("emails.send")
REPORTS = QueueSpec("reports.build")
#: Every task a test here may declare: the fixture destroys their queues.
TASKS = [EMAILS.task, REPORTS.task]
#: Long enough for a message in flight to arrive, when asserting that none does.
QUIET = 0.3


@pytest_asyncio.fixture(params=["memory", "amqp"])
async def broker(request: pytest.FixtureRequest, exchange: str) -> AsyncIterator[Broker]:
    topology = Topology(exchange)
    if request.param == "amqp":
        amqp_url = request.getfixturevalue("amqp_url")
        broker: Broker = AmqpBroker(amqp_url, topology, publish_timeout=5.0)
    else:
        broker = MemoryBroker(topology)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.destroy(TASKS)
        await broker.close()


def _differing_arguments(topology: Topology) -> set[str]:
    classic, quorum = topology.queue_arguments("classic"), topology.queue_arguments("quorum")
    return {key for key in classic.keys() | quorum.keys() if classic.get(key) != quorum.get(key)}


async def counts(broker: Broker, task: str, expected: tuple[int, int]) -> tuple[int, int]:
    """(ready, consumers) of a queue, polled briefly until they are ``expected``: a
    quorum queue updates its consumer count a moment after a consumer goes."""
    found = (-1, -1)
    for _ in range(50):
        info = await broker.queue_info(task)
        assert info is not None
        found = (info.ready, info.consumers)
        if found == expected:
            break
        await asyncio.sleep(0.05)
    return found


class Inbox:
    """A handler that keeps every delivery, to be awaited instead of slept for."""

    def __init__(self) -> None:
        self._deliveries: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __call__(self, delivery: Delivery) -> None:
        self._deliveries.put_nowait(delivery)

    async def get(self, timeout: float = 5.0) -> Delivery:
        return await asyncio.wait_for(self._deliveries.get(), timeout)

    async def take(self, count: int) -> list[Delivery]:
        return [await self.get() for _ in range(count)]

    async def assert_nothing_more(self) -> None:
        await asyncio.sleep(QUIET)
        assert self._deliveries.empty(), f"unexpected delivery: {self._deliveries.get_nowait()}"


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


async def test_a_dead_letter_keeps_reason_and_routing_key_and_browsing_leaves_it(
    broker: Broker,
) -> None:
    await broker.publish(EMAILS, b'{"bad": true}', task_id="t-1")
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivery = await inbox.get()

    await broker.dead_letter(delivery, "malformed task message")
    await delivery.ack()

    for _ in range(2):  # browsing twice: the first look removed nothing
        (letter,) = await broker.dead_letters()
        assert letter.body == b'{"bad": true}'
        assert letter.reason == "malformed task message"
        assert letter.routing_key == EMAILS.task
        assert letter.queue == broker.topology.queue_name(EMAILS.task)
        assert letter.correlation_id == "t-1"
        assert letter.message_id and letter.message_id != delivery.message_id
        assert letter.headers[REASON_HEADER] == "malformed task message"
        assert letter.headers[QUEUE_HEADER] == broker.topology.queue_name(EMAILS.task)
    assert await broker.dead_letters(limit=0) == []


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


# -- operating the dead-letter queue ----------------------------------------------------


def task_body(spec: QueueSpec, task_id: str) -> bytes:
    return json.dumps({"id": task_id, "task": spec.task, "args": [], "kwargs": {}}).encode()


async def dead_letter_one(
    broker: Broker, spec: QueueSpec, task_id: str, reason: str = "task raised E: boom"
) -> None:
    """Publish a task message, take it and dead-letter it, as a worker does a failed task."""
    await broker.publish(spec, task_body(spec, task_id), task_id=task_id)
    inbox = Inbox()
    consumer = await broker.consume([spec], inbox, prefetch=1)
    delivery = await inbox.get()
    await broker.dead_letter(delivery, reason)
    await delivery.ack()
    await consumer.close()


async def dead_ids(broker: Broker, task: str | None = None) -> list[str | None]:
    return [letter.task_id for letter in await broker.dead_letters(task=task)]


class StrayDelivery(Delivery):
    """A delivery from no task queue of ours, with no id: what a stray client leaves."""

    def __init__(self, body: bytes) -> None:
        super().__init__(body=body, task="stray", queue="elsewhere", routing_key="stray")

    async def ack(self) -> None:
        pass

    async def requeue(self) -> None:
        pass


async def test_a_dead_letter_says_which_task_and_id_died_and_when(broker: Broker) -> None:
    before = utcnow()
    await dead_letter_one(broker, EMAILS, "t-1")

    (letter,) = await broker.dead_letters()

    assert (letter.task_id, letter.task) == ("t-1", EMAILS.task)
    assert letter.dead_at is not None and before <= letter.dead_at <= utcnow()
    assert letter.headers[DEAD_AT_HEADER] == letter.dead_at.isoformat()


async def test_dead_letters_are_listed_by_task_and_a_short_look_keeps_their_order(
    broker: Broker,
) -> None:
    for n, spec in enumerate([EMAILS, REPORTS, EMAILS]):
        await dead_letter_one(broker, spec, f"t-{n}")

    assert [d.task_id for d in await broker.dead_letters(limit=1)] == ["t-0"]
    assert await dead_ids(broker, EMAILS.task) == ["t-0", "t-2"]
    assert [d.task_id for d in await broker.dead_letters(1, task=REPORTS.task)] == ["t-1"]
    # RabbitMQ puts a message given back at the back of a quorum queue: looking at the
    # first few must not move them behind the rest.
    assert await dead_ids(broker) == ["t-0", "t-1", "t-2"]


async def test_requeue_by_task_sends_its_letters_back_as_fresh_task_messages(
    broker: Broker,
) -> None:
    await dead_letter_one(broker, EMAILS, "t-1")
    await dead_letter_one(broker, REPORTS, "t-2")

    requeued = await broker.requeue_dead(task=EMAILS.task)

    assert [letter.task_id for letter in requeued] == ["t-1"]
    assert await dead_ids(broker) == ["t-2"]
    inbox = Inbox()
    await broker.consume([EMAILS], inbox, prefetch=10)
    delivery = await inbox.get()
    assert delivery.body == task_body(EMAILS, "t-1")
    assert (delivery.correlation_id, delivery.routing_key) == ("t-1", EMAILS.task)
    dead_headers = {REASON_HEADER, QUEUE_HEADER, DEAD_AT_HEADER, "x-death"}
    assert dead_headers.isdisjoint(delivery.headers)
    await delivery.ack()


async def test_requeue_by_id_takes_only_those_and_leaves_the_others_in_place(
    broker: Broker,
) -> None:
    for n in range(3):
        await dead_letter_one(broker, EMAILS, f"t-{n}")

    requeued = await broker.requeue_dead(ids=["t-2", "t-0", "t-9"])

    assert [letter.task_id for letter in requeued] == ["t-0", "t-2"]
    assert await dead_ids(broker) == ["t-1"]
    assert await counts(broker, EMAILS.task, (2, 0)) == (2, 0)


async def test_requeue_of_everything_empties_the_queue_and_purge_deletes_and_counts(
    broker: Broker,
) -> None:
    await dead_letter_one(broker, EMAILS, "t-1")
    await dead_letter_one(broker, REPORTS, "t-2")
    assert len(await broker.requeue_dead()) == 2
    assert await dead_ids(broker) == []

    await dead_letter_one(broker, EMAILS, "t-3")
    await dead_letter_one(broker, EMAILS, "t-4")
    assert await broker.purge_dead() == 2
    assert await dead_ids(broker) == []
    assert await broker.purge_dead() == 0
    assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)  # t-1 only, requeued


async def test_a_letter_with_no_id_or_task_is_listed_stays_on_requeue_and_can_be_purged(
    broker: Broker,
) -> None:
    await broker.dead_letter(StrayDelivery(b"\xff{not json"), "body is not JSON")
    await dead_letter_one(broker, EMAILS, "t-1")

    stray, _ = await broker.dead_letters()
    assert (stray.task_id, stray.task, stray.reason) == (None, None, "body is not JSON")
    assert [letter.task_id for letter in await broker.requeue_dead()] == ["t-1"]
    assert [letter.body for letter in await broker.dead_letters()] == [b"\xff{not json"]
    assert await broker.purge_dead() == 1


async def test_requeue_prepares_each_letter_first_and_one_that_fails_stays_dead(
    broker: Broker,
) -> None:
    for n in range(3):
        await dead_letter_one(broker, EMAILS, f"t-{n}")
    prepared = []

    async def prepare(task_id: str, task: str) -> QueueSpec:
        prepared.append((task_id, task))
        if task_id == "t-1":
            raise StoreError("the store is down")
        return QueueSpec(task)

    with pytest.raises(StoreError):
        await broker.requeue_dead(prepare=prepare)

    assert prepared == [("t-0", EMAILS.task), ("t-1", EMAILS.task)]
    assert sorted(await dead_ids(broker)) == ["t-1", "t-2"]
    assert await counts(broker, EMAILS.task, (1, 0)) == (1, 0)


async def test_a_letter_whose_publish_fails_stays_dead(broker: Broker) -> None:
    await dead_letter_one(broker, EMAILS, "t-1")

    async def to_a_classic_queue(task_id: str, task: str) -> QueueSpec:
        return QueueSpec(task, queue_type="classic")  # the queue is quorum: refused

    with pytest.raises(QueueMismatch):
        await broker.requeue_dead(prepare=to_a_classic_queue)

    assert await dead_ids(broker) == ["t-1"]
    assert await counts(broker, EMAILS.task, (0, 0)) == (0, 0)


async def test_ids_must_be_a_list_not_one_string(broker: Broker) -> None:
    with pytest.raises(ConfigurationError, match="list of task ids"):
        await broker.requeue_dead(ids="t-1")


# -- publishing many at once ------------------------------------------------------------


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
