"""``taskq dead list|requeue|purge``, end to end in subprocesses against RabbitMQ and
Redis: what an operator types when tasks have failed."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime
from pathlib import Path

from taskq import TaskQueue, TaskState, TaskStatus
from taskq.cli import RET_ERROR, RET_FAILED, RET_NOT_FOUND, RET_OK, RET_USAGE
from taskq.topology import QueueSpec
from tests.deployment import Ran, environment
from tests.helpers import eventually
from tests.test_cli import StartWorker, assert_one_line_error, env, start_worker, taskq

__all__ = ["env", "start_worker"]  # the fixtures, shared with tests/test_cli.py


async def dead_list(*args: str, env: dict[str, str], count: int) -> Ran:
    """``taskq dead list`` until it shows ``count`` letters: a dead letter is published
    a moment after the failure is recorded."""

    async def shown() -> Ran:
        return await taskq("dead", "list", *args, env=env)

    return await eventually(shown, lambda ran: len(ran.lines) == count, timeout=15)


async def status_of(task_id: str, env: dict[str, str]) -> TaskStatus:
    ran = await taskq("status", task_id, "--json", env=env)
    assert ran.returncode == RET_OK, ran.stderr
    return TaskStatus.model_validate_json(ran.stdout)


async def test_a_failed_task_is_listed_then_requeued_by_id_and_succeeds_once_fixed(
    env: dict[str, str], start_worker: StartWorker, tmp_path: Path
) -> None:
    await start_worker()
    flag = tmp_path / "fixed"
    sent = await taskq(
        "send", "cli.flaky", "--args", json.dumps([str(flag)]), "--wait", "20", env=env
    )
    assert sent.returncode == RET_FAILED, sent.stderr
    task_id = sent.lines[0]

    listed = await dead_list(env=env, count=1)
    as_json = await taskq("dead", "list", "--json", env=env)

    assert listed.returncode == RET_OK, listed.stderr
    shown_id, task, when, reason = listed.lines[0].split("  ", 3)
    assert (shown_id, task) == (task_id, "cli.flaky")
    assert datetime.fromisoformat(when).utcoffset() is not None
    assert reason.startswith(f"task raised RuntimeError: {flag} is missing")
    (letter,) = json.loads(as_json.stdout)
    assert (letter["id"], letter["task"], letter["reason"]) == (task_id, "cli.flaky", reason)
    assert datetime.fromisoformat(letter["dead_at"]) <= datetime.now().astimezone()

    flag.touch()  # the cause fixed
    requeued = await taskq("dead", "requeue", task_id, env=env)

    assert requeued.returncode == RET_OK, requeued.stderr
    assert requeued.lines == ["requeued 1 dead letter", f"{task_id}  cli.flaky"]
    status = await eventually(
        lambda: status_of(task_id, env), lambda s: s.state is TaskState.SUCCEEDED, timeout=15
    )
    assert (status.result, status.attempts) == ("fixed", 1)
    assert (await taskq("dead", "list", env=env)).lines == []


async def test_dead_letters_by_task_by_id_and_a_malformed_one_then_purge(
    env: dict[str, str],
    start_worker: StartWorker,
    tmp_path: Path,
    amqp_url: str,
    redis_url: str,
    exchange: str,
) -> None:
    worker = await start_worker()
    flag = ["--args", json.dumps([str(tmp_path / "never")])]
    ids = [(await taskq("send", "cli.flaky", *flag, env=env)).lines[0] for _ in range(2)]
    async with TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange) as app:
        spec = QueueSpec("cli.add", authoritative=False)
        await app.broker.publish(spec, b"\xff{ not json", task_id="garbled-1")
    await dead_list(env=env, count=3)
    worker.proc.send_signal(signal.SIGTERM)  # nothing runs what is requeued from here on
    assert await asyncio.wait_for(worker.proc.wait(), 20) == RET_OK

    malformed = await taskq("dead", "list", "--task", "cli.add", env=env)
    assert [line.split("  ")[:2] for line in malformed.lines] == [["garbled-1", "cli.add"]]
    assert "body is not JSON" in malformed.stdout
    assert (
        len((await taskq("dead", "list", "--task", "cli.flaky", "--limit", "1", env=env)).lines)
        == 1
    )

    requeued = await taskq("dead", "requeue", ids[0], "no-such-id", env=env)

    assert_one_line_error(requeued, code=RET_NOT_FOUND, mentions="'no-such-id'")
    assert requeued.lines == ["requeued 1 dead letter", f"{ids[0]}  cli.flaky"]
    left = await taskq("dead", "list", env=env)
    assert sorted(line.split("  ")[0] for line in left.lines) == sorted([ids[1], "garbled-1"])
    reset = await status_of(ids[0], env)
    assert (reset.state, reset.attempts, reset.error) == (TaskState.QUEUED, 0, None)
    assert (await status_of(ids[1], env)).state is TaskState.FAILED

    purged = await taskq("dead", "purge", env=env)

    assert (purged.returncode, purged.lines) == (RET_OK, ["purged 2 dead letters"])
    assert (await taskq("dead", "list", env=env)).lines == []


async def test_requeue_by_task_and_by_id_at_once_is_a_usage_error() -> None:
    ran = await taskq("dead", "requeue", "--task", "cli.flaky", "some-id", env=environment())

    assert ran.returncode == RET_USAGE
    assert "not allowed with argument --task" in ran.stderr


async def test_dead_list_refuses_the_embedded_broker_another_process_cannot_reach() -> None:
    ran = await taskq("dead", "list", env=environment())

    assert_one_line_error(ran, code=RET_ERROR, mentions="TASKQ_BROKER_URL")
