"""``taskq worker --processes N``, ``--max-tasks-per-child``, ``--health-file`` and
``--check``, end to end: the supervisor and its children are real processes on
RabbitMQ + Redis, and what they did is read from their JSON log lines."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from taskq import TaskHandle, TaskQueue, TaskState
from taskq.cli import RET_CONNECT, RET_OK
from taskq.supervisor import RET_KILLED
from tests.deployment import environment, run_python, tear_down
from tests.helpers import eventually
from tests.supervisor_app import TASK_NAMES
from tests.test_cli import StartWorker, start_worker

APP = "tests.supervisor_app:app"
__all__ = ["start_worker"]  # the fixture of tests/test_cli.py, with this module's env


@dataclass
class Launched:
    proc: asyncio.subprocess.Process
    log: Path

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def events(self) -> list[str]:
        return [r["event"] for r in self.records()]

    def child_pids(self) -> list[int]:
        """Pids of the worker processes the supervisor started, in order."""
        return [r["pid"] for r in self.records() if r["event"] == "worker process started"]

    def worker_pids(self) -> set[int]:
        """Pids of the processes in which a worker started consuming."""
        return {int(r["pid"]) for r in self.records() if r["event"] == "worker started"}

    async def until(
        self, what: str, check: Callable[[Launched], bool], timeout: float = 20
    ) -> None:
        deadline = time.monotonic() + timeout
        while not check(self):
            assert self.proc.returncode is None, f"exited early:\n{self.log.read_text()}"
            assert time.monotonic() < deadline, f"never {what}:\n{self.log.read_text()}"
            await asyncio.sleep(0.05)

    async def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), 30)


Launch = Callable[..., Awaitable[Launched]]


@pytest_asyncio.fixture
async def env(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[dict[str, str]]:
    yield {
        **environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange),
        "TASKQ_TEST_REDIS_URL": redis_url,
    }
    await tear_down(amqp_url, redis_url, exchange, TASK_NAMES)


@pytest.fixture
def launch(start_worker: StartWorker) -> Launch:
    """Starts ``taskq worker APP *args`` (killed afterwards; its children then get
    SIGTERM from Linux) and returns once ``workers`` of its workers consume."""

    async def start(*args: str, workers: int = 1) -> Launched:
        started = await start_worker(*args, app=APP)
        it = Launched(started.proc, started.log)
        # The supervisor's "worker process started" may come after the worker's own
        # "worker started" (with a zygote it learns the pid from the zygote's answer);
        # a worker without a supervisor (it says "supervisor started" before any child
        # starts) has no such line.
        await it.until(
            "started",
            lambda p: (
                p.events().count("worker started") >= workers
                and ("supervisor started" not in p.events() or len(p.child_pids()) >= workers)
            ),
        )
        return it

    return start


@pytest_asyncio.fixture
async def client(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[TaskQueue]:
    async with TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange) as app:
        yield app


@dataclass
class Touch:
    key: str  # its runs are counted under this key in Redis
    handle: TaskHandle


async def send_touches(client: TaskQueue, count: int, seconds: float = 0.0) -> list[Touch]:
    keys = [uuid.uuid4().hex for _ in range(count)]
    handles = await asyncio.gather(*(client.send("sup.touch", args=[k, seconds]) for k in keys))
    return [Touch(k, h) for k, h in zip(keys, handles, strict=True)]


async def results(touches: list[Touch], timeout: float = 30) -> list[Any]:
    return list(await asyncio.gather(*(t.handle.result(timeout=timeout) for t in touches)))


async def runs_of(redis_url: str, exchange: str, touches: list[Touch]) -> list[int]:
    """How many times each task ran (its side effect in Redis)."""
    redis = aioredis.from_url(redis_url)
    try:
        return [
            int(v or 0) for v in await redis.mget([f"{exchange}:runs:{t.key}" for t in touches])
        ]
    finally:
        await redis.aclose()


async def test_a_child_killed_with_sigkill_is_restarted_and_every_task_succeeds(
    launch: Launch, client: TaskQueue, redis_url: str, exchange: str
) -> None:
    sup = await launch("--processes", "2", "--concurrency", "4", workers=2)
    first = await send_touches(client, 10)
    pids = await results(first)
    assert set(pids) <= set(sup.child_pids())

    victim = sup.child_pids()[0]
    os.kill(victim, signal.SIGKILL)
    await sup.until(
        "restarted the child",
        lambda p: len(p.worker_pids()) == 3 and len(p.child_pids()) == 3,
    )
    died = [r for r in sup.records() if r["event"] == "worker process died; restarting"]
    assert [(r["pid"], r["signal"]) for r in died] == [(victim, "SIGKILL")]

    second = await send_touches(client, 10)
    await results(second)
    assert await runs_of(redis_url, exchange, first + second) == [1] * 20
    assert await sup.stop() == RET_OK


async def test_max_tasks_per_child_recycles_the_children_and_each_task_runs_once(
    launch: Launch, client: TaskQueue, redis_url: str, exchange: str
) -> None:
    sup = await launch(
        "--processes", "2", "--concurrency", "1", "--max-tasks-per-child", "5", workers=2
    )
    touches = await send_touches(client, 20)

    ran_in = await results(touches, timeout=60)

    assert await runs_of(redis_url, exchange, touches) == [1] * 20
    assert len(set(ran_in)) >= 4  # no process ran more than its 5
    assert all(list(ran_in).count(pid) <= 5 for pid in set(ran_in))
    assert "worker process recycled" in sup.events()
    assert "worker process died; restarting" not in sup.events()
    assert await sup.stop() == RET_OK


async def test_one_process_with_max_tasks_per_child_runs_under_the_supervisor(
    launch: Launch, client: TaskQueue
) -> None:
    sup = await launch("--max-tasks-per-child", "2", "--concurrency", "1")
    touches = await send_touches(client, 4)

    ran_in = await results(touches)

    assert "supervisor started" in sup.events()
    assert len(set(ran_in)) == 2 and sup.proc.pid not in ran_in
    assert await sup.stop() == RET_OK


async def test_sigterm_to_the_supervisor_lets_running_tasks_finish_and_exits_0(
    launch: Launch, client: TaskQueue
) -> None:
    sup = await launch("--processes", "2", "--concurrency", "2", workers=2)
    touches = await send_touches(client, 4, seconds=1.5)
    for t in touches:
        await eventually(t.handle.status, lambda s: s is not None and s.state == "started")

    assert await sup.stop() == RET_OK

    states = [s.state for s in await asyncio.gather(*(t.handle.status() for t in touches))]
    assert states == [TaskState.SUCCEEDED] * 4
    assert sup.events().count("worker process stopped") == 2
    assert "supervisor stopped" in sup.events()


async def test_a_second_sigint_kills_the_children_at_once(
    launch: Launch, client: TaskQueue
) -> None:
    sup = await launch("--processes", "2", workers=2)
    touches = await send_touches(client, 2, seconds=60)
    for t in touches:
        await eventually(t.handle.status, lambda s: s is not None and s.state == "started")

    sup.proc.send_signal(signal.SIGINT)
    await sup.until("forwarded", lambda p: "stopping the worker processes" in p.events())
    sup.proc.send_signal(signal.SIGINT)

    assert await asyncio.wait_for(sup.proc.wait(), 10) == RET_KILLED
    assert "second SIGINT: killing the worker processes" in sup.events()
    assert sup.events().count("worker process stopped") == 2


async def test_a_command_that_cannot_start_stops_the_supervisor_with_its_exit_code() -> None:
    env = environment(broker_url="amqp://guest:s3cret@127.0.0.1:1/", store_url="memory://")

    ran = await run_python("-m", "taskq", "worker", APP, "--processes", "2", env=env)

    assert ran.returncode == RET_CONNECT, ran.stderr
    assert "worker process failed at startup; stopping" in ran.stderr
    assert "s3cret" not in ran.stdout + ran.stderr


async def test_health_files_are_touched_while_the_workers_run(
    launch: Launch, tmp_path: Path
) -> None:
    path = tmp_path / "health"
    await launch(
        "--processes", "2", "--health-file", str(path), "--health-interval", "0.5", workers=2
    )
    files = [path, tmp_path / "health.0", tmp_path / "health.1"]
    await eventually(_mtimes(files), lambda m: all(m))

    before = await _mtimes(files)()
    await eventually(_mtimes(files), lambda m: all(a > b for a, b in zip(m, before, strict=True)))


async def test_a_single_worker_touches_the_health_file_itself(
    launch: Launch, tmp_path: Path
) -> None:
    path = tmp_path / "health"
    worker = await launch("--health-file", str(path), "--health-interval", "0.5")
    assert "supervisor started" not in worker.events()
    await eventually(_mtimes([path]), lambda m: all(m))

    before = await _mtimes([path])()
    await eventually(_mtimes([path]), lambda m: m[0] > before[0])


async def test_a_child_whose_event_loop_is_wedged_is_killed_and_replaced(
    launch: Launch, client: TaskQueue, tmp_path: Path
) -> None:
    sup = await launch(
        "--processes", "1", "--max-tasks-per-child", "100",
        "--health-file", str(tmp_path / "health"), "--health-interval", "0.5",
    )  # fmt: skip
    await client.send("sup.wedge", args=[30])

    await sup.until("replaced the wedged child", lambda p: len(p.worker_pids()) == 2)
    assert "worker process is wedged (its health file went stale); killing it" in sup.events()
    assert await sup.stop() == RET_OK


def _mtimes(files: list[Path]) -> Callable[[], Awaitable[list[float]]]:
    async def probe() -> list[float]:
        return [f.stat().st_mtime if f.exists() else 0.0 for f in files]

    return probe


# -- --check ------------------------------------------------------------------------


async def test_check_lists_the_tasks_checks_the_connections_and_exits_0(
    env: dict[str, str],
) -> None:
    human = await run_python("-m", "taskq", "worker", "--check", APP, env=env)
    machine = await run_python("-m", "taskq", "worker", "--check", APP, "--json", env=env)

    assert human.returncode == RET_OK, human.stderr
    assert any(line.startswith("  sup.touch  queue=") for line in human.lines), human.stdout
    assert any(line.startswith("broker") and line.endswith("ok") for line in human.lines)
    report = json.loads(machine.stdout)
    assert [t["name"] for t in report["tasks"]] == ["sup.touch", "sup.wedge"]
    touch = report["tasks"][0]
    assert (touch["queue"], touch["queue_type"], touch["max_retries"], touch["timeout"]) == (
        f"{env['TASKQ_EXCHANGE']}.sup.touch",
        "quorum",
        0,
        None,
    )


async def test_check_exits_ret_connect_with_an_unreachable_broker_and_no_password() -> None:
    env = environment(broker_url="amqp://guest:s3cret@127.0.0.1:1/", store_url="memory://")

    ran = await run_python("-m", "taskq", "worker", "--check", APP, env=env)

    assert ran.returncode == RET_CONNECT, ran.stderr
    assert ran.stderr.splitlines()[-1].startswith("taskq: error: cannot reach RabbitMQ")
    assert "s3cret" not in ran.stdout + ran.stderr
    assert ran.stdout == ""
