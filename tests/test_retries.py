"""Retries, explicit Retry / Reject, delayed sends and poison messages, on the embedded
broker and on RabbitMQ + Redis alike. Retries and delays wait in the broker."""

from __future__ import annotations

import asyncio
import itertools
import time
from datetime import UTC, datetime, timedelta

import pytest

from taskq import (
    ConfigurationError,
    MessageTooLarge,
    Reject,
    Retry,
    TaskFailed,
    TaskQueue,
    TaskState,
    Worker,
)
from taskq.retry import RetryPolicy
from tests.helpers import eventually


async def test_a_task_that_fails_twice_then_succeeds_ends_succeeded_after_3_attempts(
    app: TaskQueue,
) -> None:
    starts: list[float] = []

    @app.task(retry_backoff=0.3, retry_jitter=False)
    async def flaky() -> str:
        starts.append(time.monotonic())
        if len(starts) < 3:
            raise ConnectionError(f"attempt {len(starts)} failed")
        return "done"

    async with Worker(app, concurrency=2):
        handle = await flaky.delay()
        retrying = await eventually(
            handle.status, lambda s: s is not None and s.state is TaskState.RETRYING
        )
        assert retrying is not None and retrying.error is not None
        assert retrying.error.type == "ConnectionError"  # the failed attempt's error is kept
        assert await handle.result(timeout=20) == "done"

    status = await handle.status()
    assert status is not None and status.state is TaskState.SUCCEEDED
    assert status.attempts == 3 and status.error is None
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Backoff doubles from 0.3 s: about 0.3 s, then 0.6 s (delays resolve to 0.1 s).
    assert 0.2 <= gaps[0] < 0.3 + 3.0, gaps
    assert 0.5 <= gaps[1] < 0.6 + 3.0, gaps
    assert gaps[1] > gaps[0]
    assert await app.broker.dead_letters() == []


async def test_after_the_last_retry_the_task_fails_with_its_error_and_is_dead_lettered(
    app: TaskQueue,
) -> None:
    calls = 0

    @app.task(max_retries=2, retry_backoff=0.1, retry_jitter=False)
    def always_fails(n: int) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"bad {n}")

    async with Worker(app, concurrency=2):
        handle = await always_fails.delay(7)
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
        letters = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)

    status = await handle.status()
    assert status is not None and status.state is TaskState.FAILED
    assert status.attempts == 3 and calls == 3
    assert status.error is not None and status.error.type == "ValueError"
    assert status.error.message == "bad 7" and "Traceback" in (status.error.traceback or "")
    assert letters[0].correlation_id == handle.id
    assert "ValueError: bad 7" in letters[0].reason and "(after 3 attempts)" in letters[0].reason


async def test_reject_fails_at_once_without_retrying(app: TaskQueue) -> None:
    @app.task(max_retries=5)
    async def charge(card: str) -> None:
        raise Reject(f"card {card} refused")

    async with Worker(app):
        handle = await charge.delay("4242")
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
        letters = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)

    status = await handle.status()
    assert status is not None and status.attempts == 1
    assert status.error is not None and status.error.type == "Reject"
    assert letters[0].reason == "rejected: card 4242 refused"


async def test_retry_raised_by_the_task_waits_its_own_delay_and_counts(app: TaskQueue) -> None:
    starts: list[float] = []

    @app.task(max_retries=1, retry_backoff=100.0)  # the policy's backoff is not used
    async def poll() -> int:
        starts.append(time.monotonic())
        if len(starts) == 1:
            raise Retry(delay=0.5)
        return len(starts)

    async with Worker(app):
        handle = await poll.delay()
        assert await handle.result(timeout=20) == 2
    assert starts[1] - starts[0] >= 0.4

    @app.task(max_retries=1)
    async def never_ready() -> None:
        raise Retry(delay=0.1, reason="not ready")

    async with Worker(app, tasks=[never_ready.name]):
        handle = await never_ready.delay()
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
    status = await handle.status()
    assert status is not None and status.attempts == 2  # Retry counts against max_retries
    assert status.error is not None and status.error.message == "not ready"


async def test_only_errors_in_retry_on_are_retried_and_bad_arguments_never(
    app: TaskQueue,
) -> None:
    @app.task(retry_on=(ConnectionError,), retry_backoff=0.1)
    async def strict(x: int) -> None:
        raise TypeError("a bug, not a network hiccup")

    # An app that knows the task only by name: the worker is the first to validate.
    sender = TaskQueue(broker=app.broker, store=app.store, exchange=app.topology.exchange)
    async with Worker(app):
        handle = await strict.delay(1)
        with pytest.raises(TaskFailed):
            await handle.result(timeout=20)
        bad = await sender.send(strict.name, ["not a number"])
        with pytest.raises(TaskFailed, match="invalid arguments"):
            await bad.result(timeout=20)
    for h in (handle, bad):
        status = await h.status()
        assert status is not None and status.attempts == 1 and status.error is not None
    assert status.error is not None and status.error.type == "InvalidArguments"


async def test_countdown_holds_a_task_in_the_broker_while_it_stays_queued(app: TaskQueue) -> None:
    ran_at: list[float] = []

    @app.task
    async def remind() -> None:
        ran_at.append(time.monotonic())

    async with Worker(app):
        sent = time.monotonic()
        handle = await remind.send(countdown=1.0)
        await asyncio.sleep(0.5)
        status = await handle.status()
        assert status is not None and status.state is TaskState.QUEUED and not ran_at
        await handle.result(timeout=20)
    assert 0.9 <= ran_at[0] - sent < 6.0


async def test_eta_orders_tasks_by_when_not_by_when_sent(app: TaskQueue) -> None:
    order: list[str] = []

    @app.task
    async def mark(label: str) -> None:
        order.append(label)

    now = datetime.now(UTC)
    async with Worker(app):
        later = await mark.send(["hour"], eta=now + timedelta(hours=1))
        second = await mark.send(["2s"], eta=now + timedelta(seconds=2))
        first = await mark.send(["1s"], countdown=1)
        await second.result(timeout=20)
        await first.result(timeout=20)
        status = await later.status()
        assert status is not None and status.state is TaskState.QUEUED
    assert order == ["1s", "2s"]


async def test_delays_and_payloads_are_checked_before_anything_is_sent(app: TaskQueue) -> None:
    @app.task
    async def echo(text: str) -> str:
        return text

    with pytest.raises(ConfigurationError, match="timezone-aware"):
        await echo.send(["x"], eta=datetime(2030, 1, 1))
    with pytest.raises(ConfigurationError, match="not both"):
        await echo.send(["x"], countdown=1, eta=datetime.now(UTC))
    with pytest.raises(ConfigurationError):
        await echo.send(["x"], countdown=float("nan"))
    with pytest.raises(MessageTooLarge, match="limit is 1048576"):
        await echo.send(["x" * (1024 * 1024)], task_id="too-big")
    assert await app.store.get("too-big") is None


async def test_a_task_whose_worker_dies_on_every_attempt_is_dead_lettered_as_poison(
    app: TaskQueue,
) -> None:
    """Stopping a worker with no grace while the task runs stands in for a worker that
    crashes (the fault suite kills real processes): the delivery is never settled."""
    started = asyncio.Event()

    @app.task(max_retries=1)
    async def hangs() -> None:
        started.set()
        await asyncio.sleep(3600)

    handle = await hangs.delay()
    for _ in range(2):  # two starts allowed (1 + 1 retry), both cut short
        started.clear()
        worker = Worker(app)
        await worker.start()
        await asyncio.wait_for(started.wait(), 20)
        await worker.stop(grace=0)
    async with Worker(app):
        with pytest.raises(TaskFailed, match="poison message"):
            await handle.result(timeout=20)
        letters = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    status = await handle.status()
    assert status is not None and status.state is TaskState.FAILED
    assert status.error is not None and status.error.type == "WorkerLost"
    assert "poison message" in letters[0].reason


def test_retry_options_are_checked_at_registration() -> None:
    app = TaskQueue()
    for options in (
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"retry_backoff": -1},
        {"retry_backoff": 10, "retry_backoff_max": 5},
        {"retry_on": ("ValueError",)},
        {"timeout": 0},
        {"timeout": float("inf")},
    ):

        def job() -> None: ...

        with pytest.raises(ConfigurationError):
            app.task(name="t.bad", **options)(job)  # type: ignore[call-overload]
        assert "t.bad" not in app.tasks


def test_a_task_allowed_to_outlive_the_consumer_timeout_is_refused() -> None:
    app = TaskQueue(consumer_timeout=60)

    with pytest.raises(ConfigurationError, match="consumer_timeout"):

        @app.task(timeout=45)
        def slow() -> None: ...

    @app.task(timeout=30)
    def fine() -> None: ...

    @app.task
    def default() -> None: ...

    assert fine.time_limit == 30 and default.time_limit == 30  # half the consumer timeout


def test_backoff_doubles_up_to_its_ceiling_with_full_jitter() -> None:
    policy = RetryPolicy(backoff=1.0, backoff_max=5.0, jitter=False)
    assert [policy.backoff_for(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    jittered = RetryPolicy(backoff=1.0, backoff_max=300.0)
    samples = [jittered.backoff_for(3) for _ in range(200)]
    assert all(0 <= s <= 4.0 for s in samples) and max(samples) - min(samples) > 1.0
    assert policy.decide(ValueError(), attempts=4) is None  # 3 retries spent
    assert policy.decide(Reject("no"), attempts=1) is None
    assert policy.decide(Retry(delay=7), attempts=1) == 7


async def test_retries_and_delays_work_for_a_classic_task_queue_too(app: TaskQueue) -> None:
    calls = 0

    @app.task(queue_type="classic", retry_backoff=0.2, retry_jitter=False)
    async def flaky_classic() -> int:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise ConnectionError("once")
        return calls

    async with Worker(app):
        handle = await flaky_classic.send(countdown=0.3)
        assert await handle.result(timeout=20) == 2
    status = await handle.status()
    assert status is not None and status.attempts == 2
