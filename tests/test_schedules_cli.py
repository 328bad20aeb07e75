"""``taskq scheduler`` end to end in subprocesses: ``--list``, what is refused at start
with one line, and the issue's failover check on RabbitMQ and Redis: two schedulers,
the active one killed, ticks keep coming from the other, none runs twice."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import pytest_asyncio

from taskq import TaskQueue, TaskState, Worker
from taskq.cli import RET_ERROR, RET_IMPORT, RET_OK
from tests.deployment import ROOT, environment, run_python, tear_down
from tests.test_cli import assert_one_line_error

APP = "tests.schedule_app:app"


async def test_list_prints_each_schedule_with_its_next_three_ticks() -> None:
    ran = await run_python("-m", "taskq", "scheduler", APP, "--list", env=environment())
    assert ran.returncode == RET_OK, ran.stderr
    lines = ran.lines
    assert lines[0] == "beat: task sched.beat, every 0:00:01"
    assert lines[4] == "nightly: task sched.beat, cron '30 2 * * *' (Europe/Berlin)"
    assert len(lines) == 8 and all(line.startswith("  20") for line in lines[5:])
    assert all(line.split()[1].endswith(("+01:00", "+02:00")) for line in lines[5:])
    listed = await run_python(
        "-m", "taskq", "scheduler", APP, "--list", "--json", env=environment()
    )
    entries = json.loads(listed.stdout)
    assert [e["name"] for e in entries] == ["beat", "nightly"]
    ticks = [t["utc"] for t in entries[0]["next_ticks"]]
    assert len(ticks) == 3 and entries[0]["next_ticks"][0]["task_id"] == f"beat@{ticks[0]}"
    steps = [
        datetime.fromisoformat(b) - datetime.fromisoformat(a) for a, b in itertools.pairwise(ticks)
    ]
    assert steps == [timedelta(seconds=1)] * 2


@pytest.mark.parametrize(
    ("case", "code", "mentions"),
    [
        ("bad-cron", RET_ERROR, "schedule 'broken': cron expression '*/5 25 * * *': hour field"),
        ("unknown-task", RET_ERROR, "schedule 'orphan' sends task 'reports.missing', which"),
    ],
)
async def test_a_schedule_that_cannot_work_is_refused_at_start_with_one_line(
    case: str, code: int, mentions: str
) -> None:
    env = {**environment(), "SCHEDULE_APP_CASE": case}
    for extra in ([], ["--list"]):
        ran = await run_python("-m", "taskq", "scheduler", APP, *extra, env=env)
        assert_one_line_error(ran, code=code, mentions=mentions)


async def test_the_scheduler_refuses_the_embedded_broker_and_a_missing_app() -> None:
    ran = await run_python("-m", "taskq", "scheduler", APP, env=environment())
    assert_one_line_error(ran, code=RET_ERROR, mentions="embedded memory://")
    ran = await run_python("-m", "taskq", "scheduler", "tests.nowhere:app", env=environment())
    assert_one_line_error(ran, code=RET_IMPORT, mentions="tests.nowhere")


# -- failover on RabbitMQ + Redis --------------------------------------------------------------


@dataclass
class SchedulerProcess:
    """A ``taskq scheduler`` subprocess and its JSON log lines, each with the loop time
    it was read at."""

    proc: asyncio.subprocess.Process
    lines: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    def when(self, event: str) -> list[float]:
        return [at for at, line in self.lines if line.get("event") == event]

    def ticks(self) -> list[tuple[float, str]]:
        return [
            (at, line["task_id"]) for at, line in self.lines if line.get("event") == "tick sent"
        ]


async def start_scheduler(env: dict[str, str]) -> SchedulerProcess:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq", "scheduler", APP, "--log-format", "json",
        cwd=ROOT, env=env, stderr=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    running = SchedulerProcess(proc)
    loop = asyncio.get_running_loop()

    async def read() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            try:
                running.lines.append((loop.time(), json.loads(raw)))
            except ValueError:
                running.lines.append((loop.time(), {"event": raw.decode().rstrip()}))

    running.reader = asyncio.create_task(read())
    return running


async def wait_for(condition: Any, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


@pytest_asyncio.fixture
async def deployment(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[dict[str, str]]:
    yield {
        **environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange),
        "SCHEDULE_APP_CASE": "every-only",
    }
    await tear_down(amqp_url, redis_url, exchange, ["sched.beat"])


async def test_when_the_active_scheduler_is_killed_the_other_sends_the_next_ticks(
    deployment: dict[str, str], amqp_url: str, redis_url: str, exchange: str
) -> None:
    loop = asyncio.get_running_loop()
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    app.task(name="sched.beat")(lambda: "ok")
    schedulers: list[SchedulerProcess] = []
    try:
        async with Worker(app, concurrency=8):
            first = await start_scheduler(deployment)
            schedulers.append(first)
            await wait_for(lambda: first.when("active scheduler"), timeout=10)
            second = await start_scheduler(deployment)
            schedulers.append(second)
            await wait_for(lambda: second.when("scheduler started"), timeout=10)
            began = first.when("active scheduler")[0]
            await asyncio.sleep(began + 5 - loop.time())
            assert not second.when("active scheduler")  # one active while both run
            killed = loop.time()
            os.kill(first.proc.pid, signal.SIGKILL)
            await asyncio.sleep(began + 15 - loop.time())
            second.proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(second.proc.wait(), 10) == RET_OK
            await asyncio.sleep(0.5)  # the last tick's task runs
            records = await app.store.recent(name="sched.beat", limit=1000)
    finally:
        for running in schedulers:
            if running.proc.returncode is None:
                running.proc.kill()
            await running.proc.wait()
            if running.reader is not None:
                await running.reader
        await app.close()

    # The other took over within the broker's failover time, and sent the next ticks.
    taken_over = second.when("active scheduler")[0] - killed
    first_tick = min(at for at, _ in second.ticks()) - killed
    assert 0 < taken_over < 2.0 and first_tick < 2.5
    before = [task_id for at, task_id in first.ticks() if at < killed]
    after = [task_id for _, task_id in second.ticks()]
    assert len(before) >= 4 and len(after) >= 8
    # No tick started twice, every one ran; ticks consecutive, at most one missed.
    ids = sorted(record.id for record in records)
    assert set(before) | set(after) <= set(ids)
    assert all(r.attempts == 1 and r.state is TaskState.SUCCEEDED for r in records), records
    ticks = [datetime.fromisoformat(i.removeprefix("beat@")).astimezone(UTC) for i in ids]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(ticks)]
    print(
        f"failover: active {taken_over:.2f} s and first tick {first_tick:.2f} s after the "
        f"kill; {len(ticks)} ticks, {sum(g == 2.0 for g in gaps)} missed"
    )
    assert all(gap in (1.0, 2.0) for gap in gaps) and sum(g == 2.0 for g in gaps) <= 1, ids
    assert len(ticks) >= 13
