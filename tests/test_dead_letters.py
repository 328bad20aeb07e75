"""Dead letters are operable: an operator lists them, sends them back to run again, or
purges them, on the embedded broker and store and on RabbitMQ + Redis alike."""

from __future__ import annotations

from typing import Any

import pytest

from taskq import ConfigurationError, Task, TaskFailed, TaskHandle, TaskQueue, TaskState, Worker
from taskq.status import utcnow
from tests.helpers import eventually


def flaky_task(app: TaskQueue, name: str) -> tuple[Task[Any, Any], dict[str, bool]]:
    """A task that fails, with no retry, until its flag says it is fixed."""
    fixed = {"fixed": False}

    @app.task(name=name, max_retries=0)
    async def flaky(n: int) -> int:
        if not fixed["fixed"]:
            raise RuntimeError("not yet")
        return n * 2

    return flaky, fixed


async def state_of(handle: TaskHandle) -> TaskState | None:
    status = await handle.status()
    return None if status is None else status.state


async def test_a_failed_task_is_listed_requeued_as_new_and_then_runs_to_success(
    app: TaskQueue,
) -> None:
    flaky, fixed = flaky_task(app, "dead.flaky")
    before = utcnow()
    async with Worker(app, concurrency=2):
        handle = await flaky.delay(21)
        with pytest.raises(TaskFailed):
            await handle.result(timeout=10)
        (letter,) = await eventually(app.dead_letters, lambda d: len(d) == 1)

    assert (letter.task_id, letter.task) == (handle.id, "dead.flaky")
    assert letter.reason.startswith("task raised RuntimeError: not yet")
    assert letter.dead_at is not None and before <= letter.dead_at <= utcnow()

    # Given the bug fixed, when the operator requeues, then the task is queued afresh.
    fixed["fixed"] = True
    requeued = await app.requeue_dead()
    assert [d.task_id for d in requeued] == [handle.id]
    assert await app.dead_letters() == []
    status = await handle.status()
    assert status is not None
    assert (status.state, status.attempts, status.error) == (TaskState.QUEUED, 0, None)

    async with Worker(app, concurrency=2):
        assert await handle.result(timeout=10) == 42
    status = await handle.status()
    assert status is not None and status.attempts == 1


async def test_dead_letters_are_listed_and_requeued_by_task_the_others_stay(
    app: TaskQueue,
) -> None:
    emails, _ = flaky_task(app, "dead.emails")
    reports, _ = flaky_task(app, "dead.reports")
    async with Worker(app, concurrency=2):
        sent = [await emails.delay(1), await reports.delay(2), await emails.delay(3)]
        await eventually(app.dead_letters, lambda d: len(d) == 3)

    listed = await app.dead_letters(task="dead.emails")
    assert sorted(d.task_id or "" for d in listed) == sorted([sent[0].id, sent[2].id])
    assert len(await app.dead_letters(task="dead.emails", limit=1)) == 1

    requeued = await app.requeue_dead(task="dead.emails")

    assert sorted(d.task_id or "" for d in requeued) == sorted([sent[0].id, sent[2].id])
    assert [d.task_id for d in await app.dead_letters()] == [sent[1].id]
    info = await app.broker.queue_info("dead.emails")
    assert info is not None and info.ready == 2
    assert await state_of(sent[1]) is TaskState.FAILED


async def test_requeue_by_id_takes_only_those_tasks_and_leaves_the_others_dead(
    app: TaskQueue,
) -> None:
    flaky, _ = flaky_task(app, "dead.byid")
    async with Worker(app, concurrency=2):
        sent = [await flaky.delay(n) for n in range(3)]
        await eventually(app.dead_letters, lambda d: len(d) == 3)

    requeued = await app.requeue_dead(ids=[sent[1].id])

    assert [d.task_id for d in requeued] == [sent[1].id]
    assert sorted(d.task_id or "" for d in await app.dead_letters()) == sorted(
        [sent[0].id, sent[2].id]
    )
    assert [await state_of(h) for h in sent] == [
        TaskState.FAILED,
        TaskState.QUEUED,
        TaskState.FAILED,
    ]


async def test_a_malformed_body_is_listed_and_purged_without_a_crash(app: TaskQueue) -> None:
    @app.task(name="dead.echo")
    async def echo(x: int) -> int:
        return x

    await app.broker.publish(echo.queue, b"\xff{ not json", task_id="garbled-1")
    async with Worker(app, concurrency=1):
        (letter,) = await eventually(app.dead_letters, lambda d: len(d) == 1)
        assert await (await echo.delay(7)).result(timeout=10) == 7

    assert (letter.task_id, letter.task) == ("garbled-1", "dead.echo")
    assert letter.reason.startswith("body is not JSON")
    assert letter.body == b"\xff{ not json"
    assert await app.purge_dead() == 1
    assert await app.dead_letters() == []
    assert await app.purge_dead() == 0


async def test_a_negative_limit_is_refused(app: TaskQueue) -> None:
    with pytest.raises(ConfigurationError, match="limit"):
        await app.dead_letters(limit=-1)
