"""The Broker contract (see ``test_broker_contract``): dead letters, and operating the
dead-letter queue (listing, requeue, purge)."""

from __future__ import annotations

import pytest

from taskq.brokers.base import Broker, Delivery
from taskq.errors import ConfigurationError, QueueMismatch, StoreError
from taskq.status import utcnow
from taskq.topology import DEAD_AT_HEADER, QUEUE_HEADER, REASON_HEADER, QueueSpec
from tests.contract.broker_helpers import EMAILS, REPORTS, Inbox, counts, task_body


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
