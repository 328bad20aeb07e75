"""Workers as real processes on RabbitMQ + Redis: what a crash does to a task."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aio_pika
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import structlog

from taskq import TaskQueue, TaskState, Worker
from tests.conftest import remove_app
from tests.helpers import eventually

ROOT = Path(__file__).resolve().parent.parent


@pytest_asyncio.fixture
async def rabbit_app(amqp_url: str, redis_url: str, exchange: str) -> Any:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    await app.connect()
    yield app
    await remove_app(app, ["proc.touch", "raw.echo"], redis_url)


@pytest.fixture
def spawn(amqp_url: str, redis_url: str, exchange: str, tmp_path: Path) -> Iterator[Any]:
    """Starts worker processes; their logs go to files (a pipe nobody reads would fill
    up and block them)."""
    procs: list[subprocess.Popen[bytes]] = []
    stack = ExitStack()

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "TASKQ_BROKER_URL": amqp_url,
            "TASKQ_STORE_URL": redis_url,
            "TASKQ_EXCHANGE": exchange,
            "TASKQ_TEST_REDIS_URL": redis_url,
        }
        log_file = stack.enter_context((tmp_path / f"worker-{len(procs)}.log").open("wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskq", "worker", "tests.process_app:app", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    stack.close()


async def test_a_worker_killed_mid_task_leaves_it_to_another_worker(
    rabbit_app: TaskQueue, spawn: Any, redis_url: str
) -> None:
    redis = aioredis.from_url(redis_url)
    key = uuid.uuid4().hex
    runs_key = f"{rabbit_app.topology.exchange}:runs:{key}"
    first = spawn("--concurrency", "2")
    try:
        handle = await rabbit_app.send("proc.touch", args=[key, 4.0])
        await eventually(lambda: redis.get(runs_key), lambda v: v == b"1", timeout=30)
        second = spawn("--concurrency", "2")
        first.send_signal(signal.SIGKILL)  # mid-task: its message was never acked
        first.wait(10)
        assert await handle.result(timeout=60) == 2
        status = await handle.status()
        assert status is not None and status.state is TaskState.SUCCEEDED and status.attempts == 2
        second.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(second.wait, 30) == 0
    finally:
        await redis.aclose()


async def test_two_thousand_tasks_over_two_worker_processes_each_run_exactly_once(
    rabbit_app: TaskQueue, spawn: Any
) -> None:
    workers = [spawn("--concurrency", "32"), spawn("--concurrency", "32")]
    handles = await asyncio.gather(
        *(rabbit_app.send("proc.touch", args=[f"k{n}"]) for n in range(2000))
    )
    runs = await asyncio.gather(*(h.result(timeout=120) for h in handles))
    assert runs == [1] * 2000  # every task's side effect happened once
    for proc in workers:
        proc.send_signal(signal.SIGTERM)
    assert [await asyncio.to_thread(p.wait, 30) for p in workers] == [0, 0]
    info = await rabbit_app.broker.queue_info("proc.touch")
    assert info is not None and info.ready == 0


async def test_a_raw_message_with_only_the_four_fields_runs(
    rabbit_app: TaskQueue, amqp_url: str
) -> None:
    @rabbit_app.task(name="raw.echo")
    async def echo(text: str, times: int = 1) -> str:
        return text * times

    task_id = str(uuid.uuid4())
    async with Worker(rabbit_app):
        # Any AMQP client: publish a JSON object to the exchange with the task name.
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            channel = await connection.channel()
            exchange = await channel.get_exchange(rabbit_app.topology.exchange)
            body = json.dumps(
                {"id": task_id, "task": "raw.echo", "args": ["ab"], "kwargs": {"times": 2}}
            )
            await exchange.publish(aio_pika.Message(body.encode()), routing_key="raw.echo")
        assert await rabbit_app.handle(task_id).result(timeout=20) == "abab"


async def test_logs_bind_the_task_and_never_show_the_broker_password(
    rabbit_app: TaskQueue, amqp_url: str
) -> None:
    @rabbit_app.task(name="raw.echo")
    async def echo(text: str) -> str:
        return text

    with structlog.testing.capture_logs() as logs:
        async with Worker(rabbit_app):
            handle = await echo.delay("hi")
            await handle.result(timeout=20)
    done = [e for e in logs if e.get("event") == "task succeeded"]
    assert done and done[0]["task_id"] == handle.id and done[0]["task"] == "raw.echo"
    assert done[0]["attempt"] == 1 and "duration" in done[0]
    password = urlsplit(amqp_url).password
    if password:
        assert f":{password}@" not in repr(logs)
