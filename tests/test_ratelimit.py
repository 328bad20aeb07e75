"""Global rate limits through the real Worker, on the embedded broker and on RabbitMQ
with Redis: starts spaced by the limit, a wait spent on a timer or in the broker's
delay queues (never holding a message), nothing asked of the store for tasks without a
limit. The issue's 200-task check over two worker processes is at the end."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from aio_pika.exceptions import ChannelNotFoundEntity

import taskq.throttle
from taskq import TaskQueue, TaskState, Worker
from taskq.brokers.memory import MemoryBroker
from taskq.errors import ConfigurationError
from taskq.ratelimit import RateLimit, parse_rate_limit
from taskq.throttle import Inbox
from taskq.topology import DELAY_LEVELS
from tests.conftest import remove_app
from tests.helpers import eventually, most_in_window

ROOT = Path(__file__).resolve().parent.parent


async def _now(value: Any) -> Any:
    return value


async def delayed_messages(app: TaskQueue, request: pytest.FixtureRequest) -> int:
    """Messages waiting in the broker's delay levels (RabbitMQ: every delay queue of
    the app's exchange, counted by passive declares)."""
    if isinstance(app.broker, MemoryBroker):
        return len(app.broker._delayed)
    connection = await aio_pika.connect(request.getfixturevalue("amqp_url"))
    try:
        count = 0
        for level in range(DELAY_LEVELS):
            channel = await connection.channel()
            try:
                queue = await channel.declare_queue(app.topology.delay_queue(level), passive=True)
            except ChannelNotFoundEntity:
                continue  # never declared: nothing was delayed that long
            count += queue.declaration_result.message_count or 0
            await channel.close()
        return count
    finally:
        await connection.close()


# -- the limit's pace ------------------------------------------------------------------


def test_starts_are_spaced_so_that_one_period_holds_at_most_count_plus_one() -> None:
    limit = parse_rate_limit("20/s", task="t")
    assert limit == RateLimit(20, 1.0)
    # 22 starts span more than a second and a tenth: no 1 s window shows 22, even
    # stamped by clocks 0.1 s apart; 21 span more than a second.
    assert 21 * limit.spacing >= 1.1 and 20 * limit.spacing > 1.0
    assert parse_rate_limit("100/m", task="t").spacing == pytest.approx(0.6)  # type: ignore[union-attr]
    assert parse_rate_limit("5/h", task="t").spacing == pytest.approx(720.0)  # type: ignore[union-attr]
    with pytest.raises(ConfigurationError, match="rate_limit"):
        parse_rate_limit("20/d", task="t")


async def test_a_parked_message_whose_slot_came_goes_first_in_the_inbox() -> None:
    inbox: Inbox[str] = Inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    inbox.put_first("parked")  # wakes a runner waiting on an empty inbox
    assert await waiting == "parked"

    inbox.put_nowait("arrived 1")
    inbox.put_nowait("arrived 2")
    inbox.put_first("parked")
    assert [inbox.get_nowait() for _ in range(3)] == ["parked", "arrived 1", "arrived 2"]
    assert inbox.empty()


# -- through the worker ----------------------------------------------------------------


async def test_a_backlog_starts_at_the_limits_pace_and_goes_round_the_broker_once(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 20 calls of a task limited to 5 a second, all queued
    @app.task(name="rate.fast", rate_limit="5/s")
    async def fast(n: int) -> int:
        return n

    handles = await fast.send_many([((n,), {}) for n in range(20)])
    delayed: list[str] = []
    publish = app.broker.publish

    async def spy(queue: Any, body: bytes, **options: Any) -> None:
        delayed.append(options["task_id"])
        await publish(queue, body, **options)

    monkeypatch.setattr(app.broker, "publish", spy)

    # When one worker with room for all of them at once drains them
    began = time.monotonic()
    async with Worker(app, concurrency=20):
        assert await asyncio.gather(*(h.result(timeout=30) for h in handles)) == list(range(20))
    elapsed = time.monotonic() - began

    # Then their starts were spread out at the limit's pace
    statuses = [await h.status() for h in handles]
    starts = [s.started_at for s in statuses if s is not None and s.started_at is not None]
    assert len(starts) == 20
    assert most_in_window(starts) <= 6
    assert elapsed >= 19 * RateLimit(5, 1.0).spacing - 0.1
    # and those that could not start within a second (about 14) were delayed once each:
    # told to come back at their turn, not all at the next free slot to be refused again
    assert delayed and len(delayed) == len(set(delayed))


async def test_a_waiting_worker_holds_no_message_it_cannot_start_soon(
    app: TaskQueue, request: pytest.FixtureRequest
) -> None:
    # Given 4 calls of a task limited to one a minute
    ran: list[int] = []

    @app.task(name="rate.slow", rate_limit="1/m")
    async def slow(n: int) -> None:
        ran.append(n)

    handles = await slow.send_many([((n,), {}) for n in range(4)])

    # When a worker that could run all 4 at once takes them
    async with Worker(app, concurrency=4):
        # Then one runs, and the 3 others wait in the broker's delay queues, not here
        await eventually(lambda: delayed_messages(app, request), lambda count: count == 3)
        assert len(ran) == 1
        info = await app.broker.queue_info("rate.slow")
        assert info is not None and info.ready == 0 and info.unacked in (0, None)
    # (stopped: anything it held unacked would now be ready again)
    info = await app.broker.queue_info("rate.slow")
    assert info is not None and info.ready == 0
    states = [s.state for h in handles if (s := await h.status()) is not None]
    assert sorted(states) == [TaskState.QUEUED] * 3 + [TaskState.SUCCEEDED]


async def test_a_stopping_worker_gives_back_the_messages_it_parked(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker that parks up to two minutes, and a task limited to one a minute
    monkeypatch.setattr(taskq.throttle, "PARK_LIMIT", 120.0)

    @app.task(name="rate.parked", rate_limit="1/m")
    async def parked() -> None:
        pass

    first, second = await parked.send_many([((), {}), ((), {})])
    worker = Worker(app, concurrency=2)
    await worker.start()
    try:
        assert await first.result(timeout=10) is None
        # When it stops while the second waits for its slot, a minute away
        began = time.monotonic()
    finally:
        await worker.stop()

    # Then it stopped at once, and the second is back in its queue, never started
    assert time.monotonic() - began < 5
    info = await app.broker.queue_info("rate.parked")
    assert info is not None and info.ready == 1
    status = await second.status()
    assert status is not None and status.state is TaskState.QUEUED and status.attempts == 0


async def test_a_cancelled_task_waiting_for_a_slot_is_acked_without_running_or_delay(
    app: TaskQueue, request: pytest.FixtureRequest
) -> None:
    ran: list[str] = []

    @app.task(name="rate.cancelled", rate_limit="1/m")
    async def limited(name: str) -> None:
        ran.append(name)

    first = await limited.send(("first",))
    second = await limited.send(("second",))
    assert await second.cancel() is True

    async with Worker(app, concurrency=1):
        await first.result(timeout=10)
        await eventually(
            lambda: app.broker.queue_info("rate.cancelled"),
            lambda info: info is not None and info.ready == 0 and info.unacked in (0, None),
        )
        await asyncio.sleep(0.2)  # time for a wrong delay to show
        assert await delayed_messages(app, request) == 0
    assert ran == ["first"]
    status = await second.status()
    assert status is not None and status.state is TaskState.CANCELLED and status.attempts == 0


async def test_tasks_without_a_limit_never_ask_the_store_for_a_start(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[str] = []
    take_start = app.store.take_start

    async def spy(key: str, limit: RateLimit, *, max_wait: float = 0.0) -> float:
        asked.append(key)
        return await take_start(key, limit, max_wait=max_wait)

    monkeypatch.setattr(app.store, "take_start", spy)

    @app.task(name="rate.free")
    async def free(n: int) -> int:
        return n

    @app.task(name="rate.limited", rate_limit="100/s")
    async def limited(n: int) -> int:
        return n

    handles = [
        *await free.send_many([((n,), {}) for n in range(20)]),
        *await limited.send_many([((n,), {}) for n in range(3)]),
    ]
    async with Worker(app, concurrency=8):
        await asyncio.gather(*(h.result(timeout=20) for h in handles))
    assert asked == ["rate.limited"] * 3  # each limited start asked once, parked or not


# -- the check: 200 tasks, 20/s, two worker processes ---------------------------


async def test_two_hundred_tasks_at_twenty_a_second_over_two_processes_take_ten_seconds(
    amqp_url: str, redis_url: str, exchange: str, tmp_path: Path
) -> None:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    app.task(name="rate.tick", rate_limit="20/s")(_tick)
    await app.connect()
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": amqp_url,
        "TASKQ_STORE_URL": redis_url,
        "TASKQ_EXCHANGE": exchange,
    }
    with (tmp_path / "workers.log").open("wb") as log_file:
        workers = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "taskq", "worker", "tests.ratelimit_app:app"),
            *("--processes", "2", "--concurrency", "16"),
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        try:
            # Given two worker processes consuming the task's queue
            await eventually(
                lambda: app.broker.queue_info("rate.tick"),
                lambda info: info is not None and info.consumers == 2,
                timeout=30,
            )
            # When 200 calls are sent at once
            began = time.monotonic()
            handles = await app.send_many("rate.tick", [((n,), {}) for n in range(200)])
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
            elapsed = time.monotonic() - began

            # Then they took 9 to 12 s, and no second held more than 21 starts
            assert results == list(range(200))
            statuses = [await h.status() for h in handles]
            starts = [s.started_at for s in statuses if s is not None and s.started_at]
            assert len(starts) == 200
            assert 9.0 <= elapsed <= 12.0, elapsed  # 10.4 s at the store's pace
            assert most_in_window(starts) <= 21
        finally:
            workers.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(workers.wait(), 30)
            finally:
                if workers.returncode is None:
                    workers.kill()
                    await workers.wait()
                await remove_app(app, ["rate.tick"], redis_url)


async def _tick(n: int) -> int:
    return n
