"""The ``taskq`` command, end to end in subprocesses: a worker, ``send`` and ``status``
against RabbitMQ and Redis, and the one-line errors a person sees when something is off."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from taskq import TaskQueue, TaskState, TaskStatus
from taskq.cli import (
    RET_CONNECT,
    RET_ERROR,
    RET_FAILED,
    RET_IMPORT,
    RET_NOT_FOUND,
    RET_OK,
    RET_TIMEOUT,
    RET_USAGE,
)
from tests.cli_app import TASK_NAMES
from tests.deployment import ROOT, Ran, environment, run_python, tear_down
from tests.helpers import eventually

APP = "tests.cli_app:app"


async def taskq(*args: str, env: dict[str, str]) -> Ran:
    return await run_python("-m", "taskq", *args, env=env)


def assert_one_line_error(ran: Ran, *, code: int, mentions: str) -> list[str]:
    """The command failed with ``code`` and says why in its last line, the one error
    line; anything before it is log lines (JSON: stderr is no terminal), never a
    traceback. Returns those log lines."""
    assert ran.returncode == code, ran.stderr
    *logs, error = [line for line in ran.stderr.splitlines() if line.strip()]
    assert error.startswith("taskq: error: "), ran.stderr
    assert mentions in error
    for line in logs:
        assert json.loads(line)["event"], line
    return logs


@pytest_asyncio.fixture
async def env(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[dict[str, str]]:
    """Settings of a deployment of this test's own on RabbitMQ + Redis; its queues and
    status records are deleted afterwards."""
    yield environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange)
    # And the example deployment's emails.send (examples.app), which one test runs.
    await tear_down(amqp_url, redis_url, exchange, [*TASK_NAMES, "emails.send"])


@dataclass
class WorkerProcess:
    proc: asyncio.subprocess.Process
    log: Path

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.log.read_text().splitlines() if line]


StartWorker = Callable[..., Awaitable[WorkerProcess]]


@pytest_asyncio.fixture
async def start_worker(env: dict[str, str], tmp_path: Path) -> AsyncIterator[StartWorker]:
    """Starts ``taskq worker`` and returns once it consumes; kills it afterwards."""
    started: list[WorkerProcess] = []

    async def start(*args: str, app: str = APP) -> WorkerProcess:
        log = tmp_path / f"worker-{len(started)}.log"
        with log.open("wb") as stderr:  # a file, not a pipe: a chatty worker never blocks
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taskq", "worker", app, "--log-format", "json", *args,
                cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        worker = WorkerProcess(proc, log)
        started.append(worker)
        deadline = time.monotonic() + 20
        while "worker started" not in worker.events():
            assert proc.returncode is None, f"worker exited early:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"worker did not start:\n{log.read_text()}"
            await asyncio.sleep(0.05)
        return worker

    yield start
    for worker in started:
        if worker.proc.returncode is None:
            worker.proc.kill()
        await worker.proc.wait()


# -- against RabbitMQ and Redis -------------------------------------------------------


async def test_the_issue_s_example_command_runs_the_example_deployment_s_emails(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    # The env fixture deletes the emails.send queue once the worker is killed: deleted
    # under a running worker, it would be declared again by the worker's consumer.
    await start_worker("--concurrency", "16", "--tasks", "emails.*", app="examples.app:app")
    user = str(uuid.uuid4())
    args = json.dumps([user, "hi"])
    ran = await taskq("send", "emails.send", "--args", args, "--wait", "20", env=env)
    assert ran.returncode == RET_OK, ran.stderr
    assert ran.stdout.splitlines()[1:] == ["true"]


async def test_send_with_wait_prints_the_task_id_then_the_result_as_json(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker("--concurrency", "4")

    ran = await taskq("send", "cli.add", "--args", "[1, 2]", "--wait", "20", env=env)

    assert ran.returncode == RET_OK, ran.stderr
    task_id, result = ran.lines
    assert uuid.UUID(task_id)
    assert json.loads(result) == 3


async def test_taskq_worker_runs_its_tasks_on_uvloop(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker("--concurrency", "2")

    ran = await taskq("send", "cli.loop", "--wait", "20", env=env)

    assert ran.returncode == RET_OK, ran.stderr
    assert json.loads(ran.lines[1]).startswith("uvloop")


async def test_status_shows_a_finished_task_to_people_and_as_json(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker("--concurrency", "4")
    sent = await taskq("send", "cli.add", "--kwargs", '{"x": 2, "y": 5}', "--wait", "20", env=env)
    task_id = sent.lines[0]

    human = await taskq("status", task_id, env=env)
    machine = await taskq("status", task_id, "--json", env=env)

    assert human.returncode == RET_OK, human.stderr
    assert "state     succeeded" in human.lines
    assert "result    7" in human.lines
    status = TaskStatus.model_validate_json(machine.stdout)
    assert (status.id, status.name, status.state) == (task_id, "cli.add", TaskState.SUCCEEDED)
    assert (status.result, status.attempts) == (7, 1)


async def test_a_failed_task_makes_send_wait_exit_ret_failed_and_status_show_the_error(
    env: dict[str, str], start_worker: StartWorker
) -> None:
    await start_worker()

    sent = await taskq("send", "cli.fail", "--args", '["boom"]', "--wait", "20", env=env)

    assert_one_line_error(sent, code=RET_FAILED, mentions="RuntimeError: boom")
    human = await taskq("status", sent.lines[0], env=env)
    assert "state     failed" in human.lines
    assert "error     RuntimeError: boom" in human.lines
    assert any(line.startswith("  Traceback") for line in human.lines)


async def test_send_wait_exits_ret_timeout_when_no_worker_runs_the_task(
    env: dict[str, str],
) -> None:
    ran = await taskq("send", "cli.add", "--args", "[1, 2]", "--wait", "0.3", env=env)

    assert_one_line_error(ran, code=RET_TIMEOUT, mentions="did not finish within 0.3s")
    assert uuid.UUID(ran.lines[0])  # the id is printed first: the task is queued


async def test_sigterm_lets_the_running_task_finish_and_the_worker_exit_0(
    env: dict[str, str], start_worker: StartWorker, redis_url: str, exchange: str
) -> None:
    worker = await start_worker()
    sent = await taskq("send", "cli.sleep", "--args", "[1.0]", env=env)
    async with TaskQueue(broker="memory://", store=redis_url, exchange=exchange) as app:
        handle = app.handle(sent.lines[0])
        await eventually(handle.status, lambda s: s is not None and s.state == "started")

        worker.proc.send_signal(signal.SIGTERM)

        assert await asyncio.wait_for(worker.proc.wait(), 20) == RET_OK
        status = await handle.status()
    assert status is not None and status.state is TaskState.SUCCEEDED
    assert "worker stopped" in worker.events()


async def test_status_of_an_unknown_id_says_so_and_exits_ret_not_found(
    env: dict[str, str],
) -> None:
    ran = await taskq("status", "no-such-task", env=env)

    assert_one_line_error(ran, code=RET_NOT_FOUND, mentions="'no-such-task'")


# -- no services needed ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("app_path", "mentions"),
    [
        ("tests.no_such_module:app", "no module named 'tests.no_such_module'"),
        ("tests.cli_app:nope", "has no attribute 'nope'"),
        ("tests.cli_app", "package.module:attribute"),
        ("tests.cli_app:TASK_NAMES", "not a taskq.TaskQueue"),
    ],
)
async def test_a_bad_import_path_is_a_one_line_error_and_ret_import(
    app_path: str, mentions: str
) -> None:
    ran = await taskq("worker", app_path, env=environment())

    assert_one_line_error(ran, code=RET_IMPORT, mentions=mentions)


UNREACHABLE_BROKER = "amqp://guest:s3cret@127.0.0.1:1/"


@pytest.mark.parametrize(
    ("command", "settings"),
    [
        (["send", "cli.add", "--args", "[1, 2]"], {"broker_url": UNREACHABLE_BROKER}),
        (["worker", APP, "--log-level", "error"], {"broker_url": UNREACHABLE_BROKER}),
        (["status", "some-id"], {"store_url": "redis://:s3cret@127.0.0.1:1/0"}),
    ],
    ids=["send", "worker", "status"],
)
async def test_an_unreachable_broker_or_store_is_a_one_line_error_without_the_password(
    command: list[str], settings: dict[str, str]
) -> None:
    env = environment(**{"store_url": "memory://", **settings})

    ran = await taskq(*command, env=env)

    logs = assert_one_line_error(ran, code=RET_CONNECT, mentions="127.0.0.1:1")
    assert "s3cret" not in ran.stdout + ran.stderr, ran.stderr
    if command[0] != "worker":
        assert logs == []  # a one-shot command says it once


async def test_send_refuses_the_embedded_broker_another_process_cannot_reach() -> None:
    ran = await taskq("send", "cli.add", "--args", "[1, 2]", env=environment())

    assert_one_line_error(ran, code=RET_ERROR, mentions="TASKQ_BROKER_URL")


async def test_arguments_that_are_not_a_json_array_are_a_usage_error() -> None:
    ran = await taskq("send", "cli.add", "--args", '{"x": 1}', env=environment())

    assert ran.returncode == RET_USAGE
    assert "argument --args: must be a JSON array" in ran.stderr


async def test_a_sync_task_past_its_time_limit_makes_the_worker_replace_its_process(
    env: dict[str, str], start_worker: StartWorker, redis_url: str, exchange: str
) -> None:
    worker = await start_worker("--concurrency", "2")
    stuck = await taskq("send", "cli.overrun", "--args", "[60]", "--wait", "20", env=env)
    assert stuck.returncode == RET_FAILED, stuck.stderr
    assert "time limit of 0.5s" in stuck.stderr

    # Same process (exec, not exit): it stops, starts afresh without the stuck thread.
    deadline = time.monotonic() + 20
    while worker.events().count("worker started") < 2:
        assert worker.proc.returncode is None, worker.log.read_text()
        assert time.monotonic() < deadline, worker.log.read_text()
        await asyncio.sleep(0.05)
    assert "replacing the worker process" in worker.events()
    ran = await taskq("send", "cli.add", "--args", "[2, 3]", "--wait", "20", env=env)
    assert ran.returncode == RET_OK and ran.lines[-1] == "5"

    worker.proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(worker.proc.wait(), 20) == RET_OK
