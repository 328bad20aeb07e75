"""Broadcast tasks (issue 10), on the embedded broker and on RabbitMQ + Redis alike: each
call runs once on every worker running when it is sent, each worker's outcome is
recorded under the call's id, and a call no worker hears is an error unless allowed."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections import Counter

import pytest

import taskq
from taskq import (
    BroadcastHandle,
    ConfigurationError,
    PublishError,
    TaskQueue,
    TaskState,
    Worker,
)
from taskq.cli import RET_OK
from tests.test_cli import taskq as run_taskq


async def test_every_worker_runs_a_broadcast_once_and_records_its_own_outcome(
    app: TaskQueue,
) -> None:
    runs: list[str] = []

    @app.task(name="cache.clear", broadcast=True)
    async def clear(key: str) -> str:
        runs.append(key)
        return f"cleared {key}"

    async with Worker(app) as one, Worker(app) as two, Worker(app) as three:
        handle = await clear.delay("users")
        assert isinstance(handle, BroadcastHandle) and handle.reached is True
        outcomes = await handle.results(timeout=20, expected=3)
        await asyncio.sleep(0.3)  # a fourth run would come by now
    workers = {one.id, two.id, three.id}
    assert len(workers) == 3
    assert one.id.startswith(f"{socket.gethostname()}-{os.getpid()}")
    assert set(outcomes) == workers
    for worker, status in outcomes.items():
        assert (status.id, status.name, status.worker) == (handle.id, "cache.clear", worker)
        assert status.state is TaskState.SUCCEEDED and status.attempts == 1
        assert status.result == "cleared users"
    assert runs == ["users"] * 3
    call = await handle.status()  # the call's own record: sent
    assert call is not None and call.state is TaskState.QUEUED and call.worker is None
    with pytest.raises(ConfigurationError, match="one outcome per worker"):
        await handle.result(timeout=1)
    by_name = await app.send("cache.clear", ["by-name"], required=False)  # registered
    assert isinstance(by_name, BroadcastHandle) and by_name.reached is False  # no worker now
    assert await app.dead_letters() == []


async def test_a_broadcast_no_worker_hears_raises_unless_not_required(app: TaskQueue) -> None:
    @app.task(name="config.reload", broadcast=True)
    async def reload() -> None: ...

    with pytest.raises(PublishError, match="reached no worker"):
        await reload.send(task_id="reload-1")
    # Not sent: its record is gone, so the same id can be sent again.
    assert await app.handle("reload-1").status() is None
    handle = await reload.send(task_id="reload-1", required=False)
    assert isinstance(handle, BroadcastHandle) and handle.reached is False
    assert await handle.results(timeout=0.2) == {}
    # A worker that starts afterwards never gets a call published before it.
    async with Worker(app):
        assert await handle.results(timeout=0.5) == {}


async def test_retries_and_time_limits_apply_per_worker(app: TaskQueue) -> None:
    attempts: Counter[int] = Counter()  # by runner task: one per worker at concurrency 1

    @app.task(name="state.drain", broadcast=True, retry_backoff=0.05, retry_jitter=False)
    async def drain(tag: str) -> int:
        runner = id(asyncio.current_task())
        attempts[runner] += 1
        if attempts[runner] == 1:
            raise RuntimeError("first attempt fails")
        return attempts[runner]

    @app.task(name="state.slow", broadcast=True, timeout=0.2, max_retries=0)
    async def slow() -> None:
        await asyncio.sleep(5)

    async with Worker(app, concurrency=1), Worker(app, concurrency=1):
        handle = await drain.delay("x")
        outcomes = await handle.results(timeout=20, expected=2)
        assert [s.state for s in outcomes.values()] == [TaskState.SUCCEEDED] * 2
        assert [s.attempts for s in outcomes.values()] == [2, 2]
        assert all(s.error is None for s in outcomes.values())  # cleared by the success

        limited = await slow.delay()
        timed_out = await limited.results(timeout=20, expected=2)
        assert [s.state for s in timed_out.values()] == [TaskState.FAILED] * 2
        assert {s.error.type for s in timed_out.values() if s.error} == {"TaskTimeout"}
    assert await app.dead_letters() == []  # failures are recorded per worker, not dead letters


async def test_cancel_of_a_broadcast_interrupts_the_running_workers(app: TaskQueue) -> None:
    started = asyncio.Event()
    running: list[int] = []

    @app.task(name="cache.rebuild", broadcast=True)
    async def rebuild() -> None:
        running.append(1)
        if len(running) == 2:
            started.set()
        await asyncio.sleep(30)

    async with Worker(app), Worker(app):
        handle = await rebuild.delay()
        await asyncio.wait_for(started.wait(), 20)
        assert await handle.cancel() is True
        outcomes = await handle.results(timeout=5, expected=2)
        assert [s.state for s in outcomes.values()] == [TaskState.CANCELLED] * 2
        call = await handle.status()
        assert call is not None and call.state is TaskState.CANCELLED
    assert await app.dead_letters() == []


async def test_a_worker_that_had_not_started_a_cancelled_broadcast_skips_it(
    app: TaskQueue,
) -> None:
    gate, blocking = asyncio.Event(), asyncio.Event()
    ran: list[str] = []

    @app.task(name="busy.block", broadcast=True)
    async def block() -> None:
        blocking.set()
        await gate.wait()

    @app.task(name="cache.flush", broadcast=True)
    async def flush() -> None:
        ran.append("flush")

    async with Worker(app, concurrency=1):  # its one slot held by `block`
        await block.delay()
        await asyncio.wait_for(blocking.wait(), 20)
        handle = await flush.delay()
        assert await app.cancel(handle.id) is True
        gate.set()
        outcomes = await handle.results(timeout=10, expected=1)
    assert [s.state for s in outcomes.values()] == [TaskState.CANCELLED]
    assert [s.attempts for s in outcomes.values()] == [0]
    assert ran == []


async def test_what_a_broadcast_cannot_do_is_refused_before_sending(app: TaskQueue) -> None:
    @app.task(name="cache.drop", broadcast=True)
    async def drop(key: str) -> None: ...

    with pytest.raises(ConfigurationError, match="countdown"):
        await drop.send(["k"], countdown=5)
    with pytest.raises(ConfigurationError, match="priority"):
        await drop.send(["k"], priority=1)
    with pytest.raises(ConfigurationError, match="send_many"):
        await drop.send_many([(["k"], {})])
    with pytest.raises(ConfigurationError, match="workflow step"):
        await taskq.chain(drop.s("k")).delay()
    for option in ({"max_priority": 3}, {"prefetch": 1}, {"rate_limit": "1/s"}):
        with pytest.raises(ConfigurationError, match="broadcast=True takes no"):
            app.task(name="cache.other", broadcast=True, **option)(drop.fn)
    assert await app.store.recent() == []  # nothing was written, nothing sent


# The status command reads a store another process can reach: RabbitMQ + Redis only.
@pytest.mark.parametrize("backend", ["rabbitmq"], indirect=True)
async def test_taskq_status_lists_one_line_per_worker(
    app: TaskQueue, amqp_url: str, redis_url: str
) -> None:

    @app.task(name="cache.warm", broadcast=True)
    async def warm(n: int) -> int:
        if n < 0:
            raise ValueError("negative")
        return n

    async with Worker(app) as one, Worker(app) as two:
        handle = await warm.delay(7)
        await handle.results(timeout=20, expected=2)
    env = {
        **os.environ,
        "TASKQ_BROKER_URL": amqp_url,
        "TASKQ_STORE_URL": redis_url,
        "TASKQ_EXCHANGE": app.topology.exchange,
    }
    shown = await run_taskq("status", handle.id, env=env)
    assert shown.returncode == RET_OK, shown.stderr
    assert "state     queued" in shown.lines
    lines = [line for line in shown.lines if line.startswith("worker ")]
    assert sorted(line.split()[1] for line in lines) == sorted([one.id, two.id])
    assert all("succeeded  attempts=1" in line and "result=7" in line for line in lines)
    as_json = await run_taskq("status", handle.id, "--json", env=env)
    data = json.loads(as_json.stdout)
    assert data["id"] == handle.id and set(data["workers"]) == {one.id, two.id}
    assert {w["state"] for w in data["workers"].values()} == {"succeeded"}
