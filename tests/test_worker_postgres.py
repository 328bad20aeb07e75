"""A worker on RabbitMQ with its statuses in PostgreSQL, end to end: tasks run and their
outcomes are recorded, a failed attempt is retried, a final failure is kept with its
error, a batch of sends and a chord go through the store's SQL, and a cancel before a
start is honoured."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

import taskq
from taskq import TaskFailed, TaskQueue, TaskState, Worker
from taskq.stores.postgres import PostgresStore
from tests.conftest import drop_pg_schema


@pytest_asyncio.fixture
async def pg_app(amqp_url: str, pg_url: str, exchange: str) -> AsyncIterator[TaskQueue]:
    app = TaskQueue(broker=amqp_url, store=pg_url, exchange=exchange, publish_timeout=10)
    assert isinstance(app.store, PostgresStore)
    await app.connect()
    try:
        yield app
    finally:
        try:
            await app.broker.destroy(list(app.tasks))
        finally:
            await app.close()
            await drop_pg_schema(pg_url, app.store.schema)


async def test_tasks_run_and_their_outcomes_are_recorded_in_postgres(pg_app: TaskQueue) -> None:
    app = pg_app
    attempts: list[int] = []

    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task
    def shout(text: str) -> str:
        return text.upper()

    @app.task(max_retries=2, retry_backoff=0.05, retry_jitter=False)
    async def flaky(value: str) -> str:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("first attempt fails")
        return value

    @app.task(max_retries=0)
    async def broken() -> None:
        raise ValueError("always")

    async with Worker(app, concurrency=8):
        handles = [await add.delay(i, i) for i in range(20)]
        loud = await shout.delay("hi")
        retried = await flaky.delay("ok")
        failed = await broken.delay()
        assert [await h.result(timeout=30) for h in handles] == [2 * i for i in range(20)]
        assert await loud.result(timeout=30) == "HI"
        assert await retried.result(timeout=30) == "ok"
        try:
            await failed.result(timeout=30)
        except TaskFailed as exc:
            assert exc.status.error is not None and exc.status.error.type == "ValueError"
        else:
            raise AssertionError("broken() succeeded")

    done = await handles[3].status()
    assert done is not None and done.state is TaskState.SUCCEEDED and done.result == 6
    assert done.attempts == 1 and done.args == [3, 3] and done.kwargs == {}
    assert done.created_at and done.started_at and done.finished_at
    assert done.created_at <= done.started_at <= done.finished_at
    again = await retried.status()
    assert again is not None and again.attempts == 2 and again.state is TaskState.SUCCEEDED
    assert again.error is None
    final = await failed.status()
    assert final is not None and final.state is TaskState.FAILED and final.attempts == 1
    assert final.error is not None and final.error.message == "always"
    listed = await app.store.recent(name=broken.name, state=TaskState.FAILED)
    assert [s.id for s in listed] == [failed.id]


async def test_send_many_a_chord_and_a_cancel_go_through_postgres(pg_app: TaskQueue) -> None:
    app = pg_app
    ran: list[Any] = []

    @app.task
    async def inc(x: int) -> int:
        return x + 1

    @app.task
    async def total(values: list[int]) -> int:
        ran.append(values)
        return sum(values)

    @app.task
    async def never() -> None:
        ran.append("never")

    cancelled = await never.delay()
    assert await app.cancel(cancelled.id)
    sent = await inc.send_many([((i,), {}) for i in range(50)])
    async with Worker(app, concurrency=16):
        assert [await h.result(timeout=30) for h in sent] == [i + 1 for i in range(50)]
        wf = await taskq.chord([inc.s(i) for i in range(10)], total.s()).delay()
        assert await wf.result(timeout=30) == sum(range(1, 11))
        await asyncio.sleep(0.3)  # the cancelled task's message reaches the worker
    status = await cancelled.status()
    assert status is not None and status.state is TaskState.CANCELLED
    assert ran == [list(range(1, 11))]  # the callback ran once; the cancelled task never
