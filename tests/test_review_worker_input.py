"""Bad input never takes a worker down: whatever a message holds, its runner goes on
serving, the message is settled, and the store says what happened."""

from __future__ import annotations

import json
import uuid

import pydantic
import pytest

from taskq import TaskFailed, TaskQueue, TaskState, Worker
from tests.helpers import eventually


async def test_a_deeply_nested_body_is_dead_lettered_and_the_worker_keeps_serving(
    app: TaskQueue,
) -> None:
    @app.task
    async def echo(x: int) -> int:
        return x

    task_id = str(uuid.uuid4())
    # Valid JSON, but deeper than Python's json module recurses: it raises
    # RecursionError, not ValueError.
    await app.broker.publish(echo.queue, b"[" * 100_000 + b"]" * 100_000, task_id=task_id)
    async with Worker(app, concurrency=1):  # one runner: if it dies, nothing else runs
        assert await (await echo.delay(5)).result(timeout=10) == 5
    dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].correlation_id == task_id
    assert dead[0].reason.startswith("body is not JSON")
    status = await app.handle(task_id).status()
    assert status is not None and status.state is TaskState.FAILED


class Payload(pydantic.BaseModel):
    size: int

    @pydantic.field_validator("size", mode="after")
    @classmethod
    def _check(cls, size: int) -> int:
        # A validator with a bug: pydantic lets anything but ValueError and
        # AssertionError propagate as it is.
        return [1, 2, 3][size]


async def test_arguments_whose_validator_crashes_fail_the_task_and_the_worker_keeps_serving(
    app: TaskQueue,
) -> None:
    @app.task(name="payloads.take")
    async def take(payload: Payload) -> int:
        return payload.size

    task_id = str(uuid.uuid4())
    body = json.dumps({"id": task_id, "task": "payloads.take", "args": [{"size": 9}], "kwargs": {}})
    await app.broker.publish(take.queue, body.encode(), task_id=task_id)
    async with Worker(app, concurrency=1, tasks=["payloads.take"]):
        assert await (await take.delay({"size": 1})).result(timeout=10) == 2
    dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].correlation_id == task_id
    assert dead[0].reason.startswith("invalid arguments for task 'payloads.take'")
    status = await app.handle(task_id).status()
    assert status is not None and status.state is TaskState.FAILED
    assert status.error is not None and "IndexError" in status.error.message


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be shown")


async def test_a_task_raising_an_unprintable_exception_is_recorded_failed(
    app: TaskQueue,
) -> None:
    @app.task
    async def odd(n: int) -> int:
        if n < 0:
            raise Unprintable()
        return n

    async with Worker(app, concurrency=1):
        bad = await odd.delay(-1)
        with pytest.raises(TaskFailed) as caught:
            await bad.result(timeout=10)
        assert await (await odd.delay(3)).result(timeout=10) == 3
    error = caught.value.status.error
    assert error is not None and error.type == "Unprintable"
    dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].correlation_id == bad.id


async def test_a_failure_with_a_huge_message_is_dead_lettered_with_a_bounded_reason(
    app: TaskQueue,
) -> None:
    @app.task
    async def verbose(n: int) -> int:
        if n < 0:
            raise RuntimeError("x" * 300_000)  # far over AMQP's 128 KiB frame
        return n

    async with Worker(app, concurrency=1):
        bad = await verbose.delay(-1)
        with pytest.raises(TaskFailed) as caught:
            await bad.result(timeout=10)
        dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1, timeout=10)
        assert await (await verbose.delay(4)).result(timeout=10) == 4
    error = caught.value.status.error
    assert error is not None and error.message == "x" * 300_000  # the store keeps it whole
    assert dead[0].correlation_id == bad.id
    assert dead[0].reason.startswith("task raised RuntimeError: xxx")
    assert len(dead[0].reason) <= 4096
    info = await app.broker.queue_info(verbose.name)
    assert info is not None and info.ready == 0
