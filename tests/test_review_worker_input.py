"""Bad input never takes a worker down: whatever a message holds, its runner goes on
serving, the message is settled, and the store says what happened."""

from __future__ import annotations

import uuid

from taskq import TaskQueue, TaskState, Worker
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
