"""Time limits: an async task is cancelled at its limit; a sync one that overruns is
reported, its slot given back at once, and its worker process replaced. Either way
the retry policy decides what happens next and the worker keeps serving."""

from __future__ import annotations

import asyncio
import threading

import pytest

from taskq import TaskFailed, TaskQueue, TaskState, Worker


async def test_an_async_task_is_cancelled_at_its_limit_and_the_worker_keeps_serving(
    app: TaskQueue,
) -> None:
    cancelled = asyncio.Event()

    @app.task(timeout=0.3, max_retries=0)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    @app.task
    async def quick() -> str:
        return "ok"

    async with Worker(app, concurrency=1):
        handle = await slow.delay()
        with pytest.raises(TaskFailed, match=r"time limit of 0\.3s"):
            await handle.result(timeout=20)
        assert cancelled.is_set()
        assert await (await quick.delay()).result(timeout=20) == "ok"
    status = await handle.status()
    assert status is not None and status.error is not None
    assert status.error.type == "TaskTimeout" and status.attempts == 1


async def test_a_timed_out_attempt_is_retried_by_the_task_s_policy(app: TaskQueue) -> None:
    calls = 0

    @app.task(timeout=0.3, retry_backoff=0.1, retry_jitter=False)
    async def slow_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return calls

    async with Worker(app):
        handle = await slow_once.delay()
        assert await handle.result(timeout=20) == 2
    status = await handle.status()
    assert status is not None and status.state is TaskState.SUCCEEDED and status.attempts == 2


async def test_a_timeout_error_of_the_task_s_own_is_not_its_time_limit(app: TaskQueue) -> None:
    @app.task(timeout=10, max_retries=0)
    async def calls_a_slow_service() -> None:
        raise TimeoutError("the service did not answer")

    async with Worker(app):
        handle = await calls_a_slow_service.delay()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
    status = await handle.status()
    assert status is not None and status.error is not None
    assert status.error.type == "TimeoutError"


async def test_a_sync_task_past_its_limit_gives_its_slot_back_and_asks_for_a_new_process(
    app: TaskQueue,
) -> None:
    release = threading.Event()

    @app.task(timeout=0.3, max_retries=0)
    def stuck() -> None:
        release.wait(30)  # a call that ignores every attempt to stop it

    @app.task
    def quick() -> str:
        return "ok"

    worker = Worker(app, concurrency=2, threads=1)
    try:
        async with worker:
            handle = await stuck.delay()
            with pytest.raises(TaskFailed, match="time limit"):
                await handle.result(timeout=20)
            assert worker.replace_requested
            # The only thread is still stuck; a fresh pool runs the next sync task.
            assert await (await quick.delay()).result(timeout=20) == "ok"
    finally:
        release.set()
    status = await handle.status()
    assert status is not None and status.state is TaskState.FAILED
    assert status.error is not None and status.error.type == "TaskTimeout"


async def test_a_delivery_that_could_no_longer_be_acked_in_time_goes_back_unstarted(
    backend: str, exchange: str, request: pytest.FixtureRequest
) -> None:
    """The broker's consumer_timeout runs from delivery, not from start: one that waited
    in the worker behind a long task is requeued rather than started too late."""
    from structlog.testing import capture_logs

    from tests.conftest import remove_app

    if backend == "memory":
        app = TaskQueue(exchange=exchange, consumer_timeout=2.0)
        redis_url = None
    else:
        redis_url = request.getfixturevalue("redis_url")
        amqp = request.getfixturevalue("amqp_url")
        app = TaskQueue(amqp, redis_url, exchange, consumer_timeout=2.0)

    @app.task(timeout=0.9)
    async def long_a() -> None:
        await asyncio.sleep(0.8)

    @app.task(timeout=0.9)
    async def long_b() -> None:
        await asyncio.sleep(0.8)

    @app.task(timeout=0.5)
    async def short() -> str:
        return "ok"

    try:
        with capture_logs() as logs:
            # One runner, a prefetch of 1 per queue: short waits behind both long tasks,
            # 1.6 s, and then could not finish within 0.9 x 2 s of its delivery.
            async with Worker(app, concurrency=1):
                firsts = [await long_a.delay(), await long_b.delay()]
                await asyncio.sleep(0.1)
                second = await short.delay()
                for handle in firsts:
                    await handle.result(timeout=20)
                assert await second.result(timeout=20) == "ok"
        status = await second.status()
        assert status is not None and status.attempts == 1  # requeued before it started
        events = [e["event"] for e in logs]
        assert any("waited too long" in e for e in events), events
    finally:
        await remove_app(app, list(app.tasks), redis_url)
