"""``taskq cancel`` end to end in subprocesses against RabbitMQ and Redis: the cancel
crosses processes (the store, then the control exchange to a worker process)."""

from __future__ import annotations

import json

from taskq import TaskQueue, TaskState
from taskq.cli import RET_FAILED, RET_NOT_FOUND, RET_OK
from tests.helpers import eventually
from tests.test_cli import StartWorker, assert_one_line_error, env, start_worker, taskq

__all__ = ["env", "start_worker"]  # fixtures, imported for pytest


def _app(env: dict[str, str]) -> TaskQueue:
    return TaskQueue(broker=env["TASKQ_BROKER_URL"], store=env["TASKQ_STORE_URL"],
                     exchange=env["TASKQ_EXCHANGE"])  # fmt: skip


async def _state(app: TaskQueue, task_id: str) -> TaskState | None:
    status = await app.handle(task_id).status()
    return None if status is None else status.state


async def test_cancel_interrupts_a_task_running_in_a_worker_process(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker("--concurrency", "2")
    sent = await taskq("send", "cli.sleep", "--args", "[60]", env=env)
    assert sent.returncode == RET_OK, sent.stderr
    task_id = sent.lines[0]
    app = _app(env)
    try:
        await eventually(lambda: _state(app, task_id), lambda s: s is TaskState.STARTED)
        ran = await taskq("cancel", task_id, env=env)
        assert ran.returncode == RET_OK, ran.stderr
        assert ran.lines == [f"{task_id} cancelled"]
        status = await taskq("status", task_id, "--json", env=env)
        assert json.loads(status.stdout)["state"] == "cancelled"
        shown = await taskq("status", task_id, env=env)
        assert "state     cancelled" in shown.lines and "attempts  1" in shown.lines
        assert not any(line.startswith("result") for line in shown.lines)
    finally:
        await app.close()


async def test_cancel_of_a_queued_task_and_status_lists_it_by_state(env: dict[str, str]) -> None:
    sent = await taskq("send", "cli.add", "--args", "[1, 2]", env=env)
    task_id = sent.lines[0]
    ran = await taskq("cancel", task_id, env=env)
    assert (ran.returncode, ran.lines) == (RET_OK, [f"{task_id} cancelled"]), ran.stderr
    listed = await taskq("status", "--state", "cancelled", env=env)
    assert listed.returncode == RET_OK, listed.stderr
    assert [line.split()[0] for line in listed.lines] == [task_id]
    assert "cancelled" in listed.lines[0]


async def test_cancel_says_which_it_could_not_cancel_and_exits_ret_failed(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker("--concurrency", "2")
    done = await taskq("send", "cli.add", "--args", "[1, 2]", "--wait", "20", env=env)
    finished = done.lines[0]
    blocking = (await taskq("send", "cli.block", "--args", "[3]", env=env)).lines[0]
    app = _app(env)
    try:
        await eventually(lambda: _state(app, blocking), lambda s: s is TaskState.STARTED)
        ran = await taskq("cancel", finished, blocking, env=env)
        assert ran.returncode == RET_FAILED, ran.stderr
        assert ran.lines == [
            f"{finished} not cancelled: succeeded (already finished)",
            f"{blocking} not cancelled: started (a sync task runs to its end)",
        ]
        assert await app.handle(blocking).result(timeout=20) == 3
    finally:
        await app.close()


async def test_cancel_of_an_unknown_id_is_a_one_line_error_and_ret_not_found(
    env: dict[str, str],
) -> None:
    queued = (await taskq("send", "cli.add", "--args", "[1, 2]", env=env)).lines[0]
    ran = await taskq("cancel", "no-such-id", queued, env=env)
    assert ran.lines == [f"{queued} cancelled"]  # the others are cancelled all the same
    assert_one_line_error(ran, code=RET_NOT_FOUND, mentions="no-such-id")
