"""Priorities end to end, through the real Worker: the issue's check, strict order with
``prefetch=1``, retries that keep their priority; and that a task without priorities is
declared and published exactly as before. Each worker test runs on the embedded broker
and on RabbitMQ with Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import aio_pika
import pytest

from taskq import TaskQueue, Worker
from taskq.brokers.amqp_publish import task_properties
from taskq.brokers.amqp_server import quorum_priority_levels, server_version
from taskq.brokers.base import Broker
from taskq.brokers.memory import MemoryBroker
from taskq.prefetch import ConsumerGroup, consume_tasks, prefetch_groups
from taskq.retry import Retry
from taskq.topology import MAX_PRIORITY_ARGUMENT, QueueSpec, Topology
from tests.conftest import remove_app
from tests.deployment import environment, run_python
from tests.helpers import eventually


async def test_twenty_urgent_tasks_all_start_before_the_thirtieth_low_one(app: TaskQueue) -> None:
    # Given 200 low-priority calls, then 20 of priority 9, all queued before any worker
    started: list[str] = []

    @app.task(name="prio.work", max_priority=9)
    async def work(kind: str, n: int) -> None:
        started.append(kind)

    await work.send_many([(("low", n), {}) for n in range(200)])
    await work.send_many([(("urgent", n), {}) for n in range(20)], priority=9)

    # When one worker at concurrency 1 drains them
    async with Worker(app, concurrency=1):
        await eventually(lambda: _now(len(started)), lambda count: count >= 50)

    # Then the 20 urgent ones all started before the 30th low one
    assert "low" in started
    thirtieth_low = [i for i, kind in enumerate(started) if kind == "low"][29]
    assert started[:thirtieth_low].count("urgent") == 20
    assert started[:20] == ["urgent"] * 20  # in fact first of all


async def test_with_prefetch_1_an_urgent_task_sent_while_a_backlog_runs_is_next(
    app: TaskQueue,
) -> None:
    # Given a worker of concurrency 4 busy with the first of 50 low calls
    started: list[str] = []
    release = asyncio.Event()

    @app.task(name="prio.strict", max_priority=9, prefetch=1)
    async def strict(kind: str) -> None:
        started.append(kind)
        await release.wait()

    await strict.send_many([(("low",), {}) for _ in range(50)])
    async with Worker(app, concurrency=4):
        await eventually(lambda: _now(len(started)), lambda count: count >= 1)
        # When 5 urgent calls arrive while it holds that one
        await strict.send_many([(("urgent",), {}) for _ in range(5)], priority=9)
        release.set()
        await eventually(lambda: _now(len(started)), lambda count: count >= 10)

    # Then they are the very next ones: with prefetch=1 it held nothing else
    assert started[:6] == ["low"] + ["urgent"] * 5


async def test_a_retry_is_published_again_with_the_original_priority(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    published: list[tuple[str, int]] = []
    original = app.broker.publish

    async def spy(queue: QueueSpec, body: bytes, **options: Any) -> None:
        published.append((options["task_id"], options.get("priority", 0)))
        await original(queue, body, **options)

    monkeypatch.setattr(app.broker, "publish", spy)
    attempts: list[int] = []

    @app.task(name="prio.flaky", max_priority=9)
    async def flaky() -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise Retry(delay=0.1)
        return "done"

    handle = await flaky.send(priority=7)
    async with Worker(app, concurrency=1):
        assert await handle.result(timeout=10) == "done"

    assert published == [(handle.id, 7), (handle.id, 7)]  # the send, then the retry


async def _now(value: int) -> int:
    return value


# -- what a task without priorities keeps ----------------------------------------------

#: A task queue's arguments before priorities existed, spelled out: they must not change.
QUORUM_BEFORE = {
    "x-queue-type": "quorum",
    "x-dead-letter-exchange": "shop.dead",
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}
CLASSIC_BEFORE = {"x-queue-type": "classic", "x-dead-letter-exchange": "shop.dead"}


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
def test_a_task_without_max_priority_is_declared_exactly_as_before(queue_type: Any) -> None:
    broker = MemoryBroker(Topology("shop"))
    spec = QueueSpec("emails.send", queue_type=queue_type)

    assert broker.declared_queue_type(spec) == queue_type
    expected = QUORUM_BEFORE if queue_type == "quorum" else CLASSIC_BEFORE
    assert broker.queue_arguments(spec) == expected
    assert MAX_PRIORITY_ARGUMENT not in broker.queue_arguments(spec)


async def test_on_rabbitmq_a_task_without_max_priority_keeps_its_quorum_queue(
    amqp_url: str, exchange: str
) -> None:
    app = TaskQueue(broker=amqp_url, store="memory://", exchange=exchange)

    @app.task(name="prio.plain")
    async def plain() -> None: ...

    try:
        await plain.send()
        # The queue exists as it always was declared: the same declaration by another
        # client with the old arguments passes (a 406 otherwise).
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            arguments = {**QUORUM_BEFORE, "x-dead-letter-exchange": f"{exchange}.dead"}
            queue = await channel.declare_queue(
                f"{exchange}.prio.plain", durable=True, arguments=arguments
            )
            assert queue.declaration_result.message_count == 1
    finally:
        await app.broker.destroy(["prio.plain"])
        await app.close()


def test_a_message_without_priority_carries_no_priority_property() -> None:
    assert task_properties("t-1").priority is None
    assert task_properties("t-1", 0).priority is None
    assert task_properties("t-1", 9).priority == 9


# -- which queue type a priority task gets ---------------------------------------------


@pytest.mark.parametrize(
    ("product", "version", "levels"),
    [
        ("RabbitMQ", "3.10.8", None),
        ("RabbitMQ", "3.13.7", None),
        ("RabbitMQ", "4.0.5", 2),
        ("RabbitMQ", b"4.2.1", 2),
        ("RabbitMQ", "4.3.0", 32),
        ("RabbitMQ", "5.1.0", 32),
        ("RabbitMQ", "unknown", None),
        ("LavinMQ", "4.3.0", None),
    ],
)
def test_quorum_priority_levels_follow_the_server_version(
    product: str, version: str | bytes, levels: int | None
) -> None:
    assert quorum_priority_levels({"product": product, "version": version}) == levels


def test_a_server_without_a_version_has_none() -> None:
    assert server_version({}) is None
    assert quorum_priority_levels({}) is None


class QuorumPriorities(MemoryBroker):
    """A broker whose quorum queues have priorities, as RabbitMQ 4.x's do."""

    def quorum_priority_levels(self) -> int | None:
        return 32


def test_where_quorum_queues_have_priorities_a_priority_task_keeps_its_quorum_queue() -> None:
    broker: Broker = QuorumPriorities(Topology("shop"))
    spec = QueueSpec("emails.send", max_priority=9)

    assert broker.declared_queue_type(spec) == "quorum"
    assert broker.queue_arguments(spec) == QUORUM_BEFORE  # no x-max-priority: built in
    classic = QueueSpec("emails.send", queue_type="classic", max_priority=9)
    assert broker.queue_arguments(classic) == {**CLASSIC_BEFORE, MAX_PRIORITY_ARGUMENT: 9}


async def test_on_rabbitmq_3_quorum_queues_have_no_priorities(amqp_url: str, exchange: str) -> None:
    app = TaskQueue(broker=amqp_url, store="memory://", exchange=exchange)
    try:
        await app.connect()
        assert app.broker.quorum_priority_levels() is None  # RabbitMQ 3.10 here
    finally:
        await remove_app(app, [], None)  # its exchanges and dead-letter queue


# -- consuming by prefetch ---------------------------------------------------------------


def test_tasks_are_grouped_by_prefetch_and_those_without_stay_in_one_group() -> None:
    app = TaskQueue(broker="memory://", store="memory://")

    @app.task(name="a")
    def a() -> None: ...

    @app.task(name="b", max_priority=9, prefetch=1)
    def b() -> None: ...

    @app.task(name="c", prefetch=1)
    def c() -> None: ...

    @app.task(name="d")
    def d() -> None: ...

    groups = prefetch_groups(list(app.tasks.values()), concurrency=16)

    assert {prefetch: [q.task for q in queues] for prefetch, queues in groups.items()} == {
        16: ["a", "d"],
        1: ["b", "c"],
    }
    assert list(prefetch_groups([app.tasks["b"]], concurrency=16)) == [1]


async def test_without_a_prefetch_option_a_worker_makes_the_single_consume_call_it_made() -> None:
    app = TaskQueue(broker="memory://", store="memory://")

    @app.task(name="a")
    def a() -> None: ...

    async def handler(delivery: Any) -> None: ...

    consumer = await consume_tasks(app.broker, list(app.tasks.values()), handler, concurrency=4)
    try:
        assert not isinstance(consumer, ConsumerGroup)  # the broker's own consumer
    finally:
        await consumer.close()

    @app.task(name="b", prefetch=1)
    def b() -> None: ...

    group = await consume_tasks(app.broker, list(app.tasks.values()), handler, concurrency=4)
    assert isinstance(group, ConsumerGroup) and len(group.consumers) == 2
    await group.cancel()
    await group.close()
    info = await app.broker.queue_info("b")
    assert info is not None and info.consumers == 0


# -- the CLI and the example ---------------------------------------------------------------


async def test_worker_check_shows_each_priority_tasks_max_priority_and_prefetch() -> None:
    env = environment(broker_url="memory://", store_url="memory://")

    ran = await run_python("-m", "taskq", "worker", "--check", "examples.priorities:app", env=env)

    assert ran.returncode == 0, ran.stderr
    report = {line.split()[0]: line for line in ran.lines if line.startswith("  ")}
    assert "queue=taskq.reports.build (classic)" in report["reports.build"]
    assert report["reports.build"].endswith("max_priority=9  prefetch=1")
    assert "max_priority" not in report["emails.send"]
