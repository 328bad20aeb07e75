"""Bad input never takes a worker down: whatever a message holds, its runner goes on
serving, the message is settled, and the store says what happened."""

from __future__ import annotations

import json
import struct
import uuid
from typing import Any

import aio_pika
import pamqp.encode
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


# Only AMQP decodes headers: a long string that is not UTF-8 comes as bytes.
@pytest.mark.parametrize("backend", ["rabbitmq"])
async def test_a_message_with_a_binary_string_header_can_be_dead_lettered(
    app: TaskQueue, amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task(name="raw.take")
    async def take(x: int) -> int:
        return x

    # Another client's header: an AMQP long string ('S') that is not UTF-8. pamqp
    # decodes it as bytes, and aio-pika cannot publish a bytes header as it is.
    original = pamqp.encode.encode_table_value

    def encode(value: Any) -> bytes:
        if isinstance(value, bytes):
            return b"S" + struct.pack(">I", len(value)) + value
        return original(value)

    task_id = str(uuid.uuid4())
    body = json.dumps({"id": task_id, "task": "raw.take", "args": ["nan"], "kwargs": {}})
    connection = await aio_pika.connect(amqp_url)
    async with Worker(app, concurrency=1):  # its queue exists from here on
        try:
            channel = await connection.channel()
            exchange = await channel.get_exchange(app.topology.exchange)
            with monkeypatch.context() as patch:
                patch.setattr(pamqp.encode, "encode_table_value", encode)
                message = aio_pika.Message(body.encode(), headers={"trace": b"\xff\xfe\x00"})
                await exchange.publish(message, "raw.take")
        finally:
            await connection.close()
        dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1, timeout=10)
        assert await (await take.delay(6)).result(timeout=10) == 6
    assert dead[0].correlation_id is None and task_id.encode() in dead[0].body
    assert dead[0].reason.startswith("invalid arguments for task 'raw.take'")
    assert bytes(dead[0].headers["trace"]) == b"\xff\xfe\x00"
