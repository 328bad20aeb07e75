"""Cancellation (issue 10), on the embedded broker and on RabbitMQ + Redis alike: a
waiting task never starts, a running async task is interrupted, a running sync task
keeps its outcome, and the store is the truth throughout."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import pytest

from taskq import TaskCancelled, TaskQueue, TaskState, UnknownTask, Worker
from taskq.events import TaskEvent
from tests.helpers import eventually


async def _no_dead_letters(app: TaskQueue) -> None:
    assert await app.dead_letters() == []


async def test_a_queued_task_cancelled_before_any_worker_never_runs(app: TaskQueue) -> None:
    ran: list[int] = []

    @app.task
    async def job(n: int) -> int:
        ran.append(n)
        return n

    cancelled = await job.delay(1)
    kept = await job.delay(2)
    assert await cancelled.cancel() is True
    status = await cancelled.status()
    assert status is not None and status.state is TaskState.CANCELLED and status.finished
    assert status.attempts == 0
    async with Worker(app, concurrency=2):
        assert await kept.result(timeout=20) == 2
        await eventually(
            lambda: app.broker.queue_info(job.name),
            lambda info: info is not None and info.ready == 0 and info.unacked in (0, None),
        )
    assert ran == [2]
    with pytest.raises(TaskCancelled, match=cancelled.id):
        await cancelled.result(timeout=1)
    final = await cancelled.status()
    assert final is not None and final.state is TaskState.CANCELLED and final.attempts == 0
    await _no_dead_letters(app)


async def test_a_delayed_task_cancelled_while_it_waits_in_the_broker_never_runs(
    app: TaskQueue,
) -> None:
    ran: list[str] = []

    @app.task
    async def later(tag: str) -> None:
        ran.append(tag)

    async with Worker(app):
        waiting = await later.send(("cancelled",), countdown=0.8)
        marker = await later.send(("marker",), countdown=1.2)
        assert await app.cancel(waiting.id) is True
        await marker.result(timeout=20)  # the cancelled one came due before it
    assert ran == ["marker"]
    with pytest.raises(TaskCancelled):
        await waiting.result(timeout=1)
    await _no_dead_letters(app)


async def test_a_task_cancelled_between_its_retries_is_not_tried_again(app: TaskQueue) -> None:
    attempts: list[int] = []
    first_failed = asyncio.Event()

    @app.task(max_retries=5, retry_backoff=1.0, retry_jitter=False)
    async def flaky() -> None:
        attempts.append(1)
        first_failed.set()
        raise RuntimeError("down")

    async with Worker(app):
        handle = await flaky.delay()
        await asyncio.wait_for(first_failed.wait(), 20)
        await eventually(handle.status, lambda s: s is not None and s.state is TaskState.RETRYING)
        assert await handle.cancel() is True
        await asyncio.sleep(1.5)  # past the backoff: the retry message came and went
    assert attempts == [1]
    status = await handle.status()
    assert status is not None and status.state is TaskState.CANCELLED
    assert status.error is not None and status.error.message == "down"  # the attempt's
    await _no_dead_letters(app)


async def test_a_running_async_task_is_interrupted_within_a_second(app: TaskQueue) -> None:
    started = asyncio.Event()
    cleaned_up: list[bool] = []

    @app.task(max_retries=3)
    async def long_job() -> str:
        started.set()
        try:
            await asyncio.sleep(60)
        finally:
            cleaned_up.append(True)
        return "finished"

    async with Worker(app, concurrency=2):
        handle = await long_job.delay()
        await asyncio.wait_for(started.wait(), 20)
        await eventually(handle.status, lambda s: s is not None and s.state is TaskState.STARTED)
        asked = time.monotonic()
        assert await handle.cancel() is True
        took = time.monotonic() - asked
        assert took < 1.0, f"interrupted after {took:.3f}s"
        with pytest.raises(TaskCancelled):
            await handle.result(timeout=5)
        await eventually(
            lambda: app.broker.queue_info(long_job.name),
            lambda info: info is not None and info.ready == 0 and info.unacked in (0, None),
        )
    assert cleaned_up == [True]  # the coroutine got CancelledError and ran its finally
    status = await handle.status()
    assert status is not None and status.state is TaskState.CANCELLED and status.attempts == 1
    assert not status.cancel_requested
    await _no_dead_letters(app)


async def test_a_running_sync_task_runs_to_its_end_and_cancel_says_false(app: TaskQueue) -> None:
    started = threading.Event()
    release = threading.Event()

    @app.task
    def blocking() -> str:
        started.set()
        release.wait(30)
        return "done"

    async with Worker(app):
        handle = await blocking.delay()
        assert await asyncio.to_thread(started.wait, 20)
        await eventually(handle.status, lambda s: s is not None and s.state is TaskState.STARTED)
        assert await app.cancel(handle.id) is False
        status = await handle.status()
        assert status is not None and status.state is TaskState.STARTED
        assert not status.cancel_requested  # refused by its worker: no redelivery is cancelled
        release.set()
        assert await handle.result(timeout=20) == "done"


async def test_cancel_of_a_finished_task_says_false_and_keeps_its_outcome(app: TaskQueue) -> None:
    @app.task
    async def quick() -> int:
        return 7

    async with Worker(app):
        handle = await quick.delay()
        assert await handle.result(timeout=20) == 7
    assert await handle.cancel() is False
    assert await handle.result(timeout=1) == 7


async def test_cancel_of_an_unknown_id_raises_unknown_task(app: TaskQueue) -> None:
    task_id = str(uuid.uuid4())
    with pytest.raises(UnknownTask, match=task_id):
        await app.cancel(task_id)


async def test_a_cancelled_task_is_listed_by_state(app: TaskQueue) -> None:
    @app.task
    async def job() -> None: ...

    handle = await job.delay()
    other = await job.delay()
    await handle.cancel()
    listed = await app.store.recent(state=TaskState.CANCELLED)
    assert [status.id for status in listed] == [handle.id]
    assert other.id not in [status.id for status in listed]


async def test_a_redelivery_of_a_task_asked_to_cancel_is_acked_without_running(
    app: TaskQueue,
) -> None:
    """The worker holding a running task died (its start recorded, no answer given):
    the message comes back and is acked without a new attempt."""
    ran: list[int] = []

    @app.task
    async def job() -> None:
        ran.append(1)

    handle = await job.delay()
    await app.store.transition(handle.id, job.name, TaskState.STARTED)  # the lost worker's
    marked = await app.store.cancel(handle.id)
    assert marked is not None and marked.cancel_requested
    async with Worker(app):
        await eventually(handle.status, lambda s: s is not None and s.finished)
        await eventually(
            lambda: app.broker.queue_info(job.name),
            lambda info: info is not None and info.ready == 0 and info.unacked in (0, None),
        )
    assert ran == []
    status = await handle.status()
    assert status is not None and status.state is TaskState.CANCELLED and status.attempts == 1
    await _no_dead_letters(app)


async def test_cancel_events_are_emitted(exchange: str) -> None:
    app = TaskQueue(broker="memory://", store="memory://", exchange=exchange, events=True)
    seen: list[TaskEvent] = []
    started = asyncio.Event()

    @app.task
    async def job(wait: bool) -> None:
        if wait:
            started.set()
            await asyncio.sleep(60)

    assert app.events is not None
    async with app:
        subscription = await app.events.subscribe("cancelled.#", seen.append)
        waiting = await job.delay(False)
        await waiting.cancel()
        async with Worker(app):
            running = await job.delay(True)
            await asyncio.wait_for(started.wait(), 10)
            await running.cancel()
        await subscription.close()
    assert [(e.task_id, e.state) for e in seen] == [
        (waiting.id, "cancelled"),
        (running.id, "cancelled"),
    ]
    assert seen[1].attempt == 1 and seen[1].routing_key == f"cancelled.{job.name}"


async def test_a_worker_ignores_control_messages_it_cannot_read(app: TaskQueue) -> None:
    @app.task
    async def job() -> int:
        return 1

    unreadable = [
        b"garbage",
        b"[]",
        b'{"type": "cancel"}',
        b'{"type": "cancel", "task_id": 5}',
        b'{"type": "restart", "task_id": "x"}',
        b"\xff\xfe",
    ]
    async with Worker(app):
        for body in unreadable:
            await app.broker.publish_control(body)
        handle = await job.delay()
        assert await handle.result(timeout=20) == 1
