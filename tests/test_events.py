"""Lifecycle events: each recorded state of a task published to ``taskq.events`` with the
routing key ``<state>.<task name>``, on RabbitMQ and in-process on the embedded broker;
off by default; ``taskq events`` tails them."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from taskq import TaskFailed, TaskQueue, Worker
from taskq.events import EMIT_TIMEOUT, EVENTS_EXCHANGE, Events, TaskEvent, topic_matches
from tests.conftest import remove_app
from tests.deployment import ROOT, environment
from tests.helpers import eventually


async def delete_events_exchange(amqp_url: str) -> None:
    """``taskq.events`` is one exchange per vhost, by its contract: a test that declared
    it on the shared broker deletes it (RabbitMQ answers delete-ok when it is gone)."""
    import aio_pika

    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.exchange_delete(EVENTS_EXCHANGE)
    finally:
        await connection.close()


@pytest_asyncio.fixture
async def events_app(backend: str, exchange: str, request: pytest.FixtureRequest) -> Any:
    """A connected app with events on, on ``backend``; removed afterwards."""
    if backend == "memory":
        app = TaskQueue(broker="memory://", store="memory://", exchange=exchange, events=True)
        redis = None
    else:
        redis = request.getfixturevalue("redis_url")
        app = TaskQueue(
            broker=request.getfixturevalue("amqp_url"), store=redis, exchange=exchange, events=True
        )
    await app.connect()
    try:
        yield app
    finally:
        await remove_app(app, list(app.tasks), redis)
        if backend != "memory":
            await delete_events_exchange(request.getfixturevalue("amqp_url"))


class Seen:
    """The events of one subscription, kept in arrival order."""

    def __init__(self) -> None:
        self.events: list[TaskEvent] = []

    def __call__(self, event: TaskEvent) -> None:
        self.events.append(event)

    def of(self, task_id: str) -> list[TaskEvent]:
        return [event for event in self.events if event.task_id == task_id]

    async def until(self, task_id: str, count: int) -> list[TaskEvent]:
        async def probe() -> list[TaskEvent]:
            return self.of(task_id)

        return await eventually(probe, lambda events: len(events) >= count, timeout=10)


@pytest_asyncio.fixture
async def seen(events_app: TaskQueue) -> AsyncIterator[Seen]:
    """Every event of the vhost (or of the process, on memory://) while the test runs."""
    assert events_app.events is not None
    collected = Seen()
    subscription = await events_app.events.subscribe("#", collected)
    yield collected
    await subscription.close()


async def test_a_task_run_emits_queued_started_succeeded_in_order_with_their_routing_keys(
    events_app: TaskQueue, seen: Seen
) -> None:
    @events_app.task(name="events.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async with Worker(events_app, concurrency=2):
        handle = await add.delay(2, 3)
        assert await handle.result(timeout=10) == 5
        events = await seen.until(handle.id, 3)

    assert [e.state for e in events] == ["queued", "started", "succeeded"]
    assert [e.routing_key for e in events] == [
        "queued.events.add",
        "started.events.add",
        "succeeded.events.add",
    ]
    assert [e.attempt for e in events] == [None, 1, 1]
    assert all(e.exchange == events_app.topology.exchange and e.pid for e in events)
    assert events[0].time <= events[1].time <= events[2].time


async def test_a_retried_task_emits_retrying_with_the_error_then_fails_with_it(
    events_app: TaskQueue, seen: Seen
) -> None:
    @events_app.task(name="events.flaky", max_retries=1, retry_backoff=0.1, retry_jitter=False)
    async def flaky() -> None:
        raise ConnectionError("no route")

    async with Worker(events_app, concurrency=2):
        handle = await flaky.delay()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=10)
        events = await seen.until(handle.id, 5)

    assert [(e.state, e.attempt) for e in events] == [
        ("queued", None),
        ("started", 1),
        ("retrying", 1),
        ("started", 2),
        ("failed", 2),
    ]
    retrying, failed = events[2], events[4]
    assert retrying.routing_key == "retrying.events.flaky"
    assert (retrying.error_type, retrying.error_message) == ("ConnectionError", "no route")
    assert (failed.error_type, failed.error_message) == ("ConnectionError", "no route")


async def test_events_are_off_by_default_and_nothing_is_declared_or_published(
    amqp_url: str, redis_url: str, exchange: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    assert app.events is None
    opened: list[str] = []

    async def open_connection(role: str) -> Any:
        opened.append(role)
        raise AssertionError("events are off: no connection for them")

    monkeypatch.setattr(app.broker, "open_connection", open_connection)
    listener = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange, events=True)
    assert listener.events is not None
    seen = Seen()
    subscription = await listener.events.subscribe("#", seen)
    try:

        @app.task(name="events.quiet")
        async def quiet() -> str:
            return "ok"

        async with Worker(app, concurrency=1):
            handle = await quiet.delay()
            assert await handle.result(timeout=10) == "ok"
        # A marker sent after the task's run arrives; none of the task's events did.
        await listener.events.emit("queued", "marker", "events.marker")
        await seen.until("marker", 1)
        assert seen.of(handle.id) == []
        assert opened == []
    finally:
        await subscription.close()
        await listener.close()
        await remove_app(app, ["events.quiet"], redis_url)
        await delete_events_exchange(amqp_url)


def test_taskq_events_1_turns_them_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKQ_EVENTS", "1")
    assert TaskQueue(broker="memory://", store="memory://").events is not None
    assert TaskQueue(broker="memory://", store="memory://", events=False).events is None


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("#", "succeeded.emails.send", True),
        ("succeeded.#", "succeeded.emails.send", True),
        ("succeeded.#", "failed.emails.send", False),
        ("*.emails.send", "retrying.emails.send", True),
        ("*.emails", "retrying.emails.send", False),
        ("failed.*", "failed.add", True),
        ("failed.#", "failed", True),  # `#` matches zero words too
        ("#.send", "queued.emails.send", True),
    ],
)
def test_the_memory_broker_matches_topics_as_rabbitmq_does(
    pattern: str, key: str, matches: bool
) -> None:
    assert topic_matches(pattern, key) is matches


async def test_an_event_that_cannot_be_published_is_dropped_without_failing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events = Events.for_broker(TaskQueue(broker="memory://", store="memory://").broker, "x")

    async def broken(event: TaskEvent) -> None:
        raise OSError("connection reset")

    monkeypatch.setattr(events.channel, "publish", broken)
    await events.emit("started", str(uuid.uuid4()), "events.any", attempt=1)  # no raise


async def test_with_the_broker_unreachable_an_event_is_dropped_within_the_emit_timeout() -> None:
    app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:1/", store="memory://", events=True)
    assert app.events is not None
    started = time.monotonic()
    for _ in range(3):  # each tries to connect again, and gives up as quickly
        await app.events.emit("queued", str(uuid.uuid4()), "events.any")
    assert time.monotonic() - started < 3 * EMIT_TIMEOUT + 0.5
    await app.close()


async def test_taskq_events_prints_the_events_it_selects_as_json_and_exits_0_on_sigterm(
    amqp_url: str, redis_url: str, exchange: str
) -> None:
    env = environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq", "events", "succeeded.#", "--json",
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange, events=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        ready = await asyncio.wait_for(proc.stderr.readline(), 20)
        assert EVENTS_EXCHANGE.encode() in ready, ready

        @app.task(name="events.cli")
        async def shout(text: str) -> str:
            return text.upper()

        async with Worker(app, concurrency=1):
            handle = await shout.delay("hi")
            assert await handle.result(timeout=10) == "HI"
        # The events exchange is shared by every app on the vhost: another app's
        # events may come first. Only `succeeded` ones pass the pattern, whoever's.
        while True:
            event = json.loads(await asyncio.wait_for(proc.stdout.readline(), 10))
            assert event["state"] == "succeeded", event
            if event["exchange"] == exchange:
                break
        assert event["task_id"] == handle.id  # queued and started were not printed
        assert (event["state"], event["task"], event["attempt"]) == ("succeeded", "events.cli", 1)

        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await remove_app(app, ["events.cli"], redis_url)
        await delete_events_exchange(amqp_url)


@pytest.mark.parametrize("backend", ["rabbitmq"])
async def test_result_is_woken_by_the_succeeded_event_not_by_polling(
    events_app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.events.WAKE_FALLBACK", 60.0)  # no poll could wake it in time

    @events_app.task(name="events.slow")
    async def slow() -> str:
        await asyncio.sleep(0.3)
        return "done"

    async with Worker(events_app, concurrency=1):
        handle = await slow.delay()
        started = time.monotonic()
        assert await asyncio.wait_for(handle.result(timeout=30), 10) == "done"
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("backend", ["rabbitmq"])
async def test_result_still_reads_the_store_when_no_event_comes(
    events_app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.events.WAKE_FALLBACK", 0.1)
    assert events_app.events is not None and events_app.events.waker is not None
    monkeypatch.setattr(events_app.events.waker, "_wake", lambda event: None)  # all lost

    @events_app.task(name="events.unheard")
    async def unheard() -> int:
        return 7

    async with Worker(events_app, concurrency=1):
        handle = await unheard.delay()
        assert await handle.result(timeout=10) == 7


async def test_an_event_no_one_listens_to_is_dropped_by_rabbitmq_not_returned(
    amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = TaskQueue(broker=amqp_url, store="memory://", events=True)
    assert app.events is not None
    try:
        with caplog.at_level(logging.WARNING):
            await app.events.emit("queued", str(uuid.uuid4()), f"events.unheard-{uuid.uuid4()}")
            await asyncio.sleep(0.3)  # a basic.return would be back by now
        assert [r.getMessage() for r in caplog.records if r.name.startswith("aiormq")] == []
    finally:
        await app.close()
        await delete_events_exchange(amqp_url)
