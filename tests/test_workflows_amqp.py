"""Workflows on RabbitMQ + Redis: the specifications of ``test_workflows`` again, then
worker processes: a chain through two of them, and a chord of 200 members whose
workers are killed with SIGKILL twice while it runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

import taskq
from taskq import TaskFailed, TaskQueue, TaskState, WorkflowState, WorkflowStatus
from tests.conftest import remove_app
from tests.deployment import environment, run_python
from tests.helpers import eventually
from tests.test_workflows import (
    test_a_cancelled_workflow_publishes_nothing_more,
    test_a_chain_passes_each_result_to_the_next_step,
    test_a_chord_calls_its_callback_once_with_every_result,
    test_a_crash_between_the_fire_claim_and_the_publish_is_repaired_by_the_redelivery,
    test_a_failing_chord_member_never_fires_the_callback,
    test_a_failing_middle_step_fails_the_workflow_and_the_last_never_publishes,
    test_a_redelivered_step_publishes_nothing_twice,
    test_a_workflow_can_be_built_by_name_and_from_json,
    test_chains_hold_groups_and_chords_and_the_reverse,
)

__all__ = [  # the embedded broker's specifications, run here on RabbitMQ + Redis
    "test_a_cancelled_workflow_publishes_nothing_more",
    "test_a_crash_between_the_fire_claim_and_the_publish_is_repaired_by_the_redelivery",
    "test_a_chain_passes_each_result_to_the_next_step",
    "test_a_chord_calls_its_callback_once_with_every_result",
    "test_a_failing_chord_member_never_fires_the_callback",
    "test_a_failing_middle_step_fails_the_workflow_and_the_last_never_publishes",
    "test_a_redelivered_step_publishes_nothing_twice",
    "test_a_workflow_can_be_built_by_name_and_from_json",
    "test_chains_hold_groups_and_chords_and_the_reverse",
]

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["wfp.add", "wfp.square", "wfp.collect", "wfp.fail"]


@pytest.fixture
def backend() -> str:
    return "rabbitmq"


@pytest_asyncio.fixture
async def rabbit_app(amqp_url: str, redis_url: str, exchange: str) -> Any:
    """The sender's side of tests.workflow_app: the same task names, sent by name."""
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    await app.connect()
    yield app
    await remove_app(app, TASKS, redis_url)


@pytest.fixture
def spawn(amqp_url: str, redis_url: str, exchange: str, tmp_path: Path) -> Iterator[Any]:
    """Starts ``taskq worker tests.workflow_app:app`` processes, logs to files."""
    procs: list[subprocess.Popen[bytes]] = []
    stack = ExitStack()

    def start(*args: str) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "TASKQ_BROKER_URL": amqp_url,
            "TASKQ_STORE_URL": redis_url,
            "TASKQ_EXCHANGE": exchange,
            "TASKQ_TEST_REDIS_URL": redis_url,
        }
        log_file = stack.enter_context((tmp_path / f"worker-{len(procs)}.log").open("wb"))
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskq", "worker", "tests.workflow_app:app", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    stack.close()


def _succeeded(status: WorkflowStatus) -> int:
    return sum(1 for t in status.tasks.values() if t and t.state is TaskState.SUCCEEDED)


async def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        await asyncio.to_thread(proc.wait, 30)


async def test_a_chain_of_three_through_two_worker_processes_gives_the_right_result(
    rabbit_app: TaskQueue, spawn: Any
) -> None:
    workers = [spawn("--concurrency", "2"), spawn("--concurrency", "2")]
    add = rabbit_app.signature
    flows = [
        taskq.chain(add("wfp.add", [n, 1]), add("wfp.add", [10]), add("wfp.add", [100]))
        for n in range(10)
    ]
    handles = [await flow.delay() for flow in flows]
    results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
    assert results == [n + 111 for n in range(10)]
    for handle in handles:
        status = await handle.status()
        assert status is not None and status.state is WorkflowState.SUCCEEDED
        assert all(s is not None and s.attempts == 1 for s in status.tasks.values())
    await _stop(*workers)


async def test_a_chain_whose_middle_step_fails_never_publishes_the_last(
    rabbit_app: TaskQueue, spawn: Any
) -> None:
    workers = [spawn("--concurrency", "2")]
    sig = rabbit_app.signature
    wf = await taskq.chain(sig("wfp.add", [1, 1]), sig("wfp.fail"), sig("wfp.add", [1])).delay()
    with pytest.raises(TaskFailed, match=r"wfp\.fail .*ValueError: cannot take 2"):
        await wf.result(timeout=60)
    await _stop(*workers)  # everything it would have published is out by now
    assert await rabbit_app.store.get(f"{wf.id}.2") is None
    info = await rabbit_app.broker.queue_info("wfp.add")
    assert info is not None and info.ready == 0
    (dead,) = await rabbit_app.dead_letters()
    assert dead.task_id == f"{wf.id}.1"


@pytest.mark.timeout(240)
async def test_a_chord_of_200_fires_once_with_every_result_through_two_sigkills(
    rabbit_app: TaskQueue, spawn: Any, redis_url: str
) -> None:
    members = 200
    sig = rabbit_app.signature
    flow = taskq.chord(
        [sig("wfp.square", [n], {"seconds": 0.2}) for n in range(members)],
        sig("wfp.collect"),
    )
    workers = [spawn("--concurrency", "4"), spawn("--concurrency", "4")]
    wf = await flow.delay()
    kills = 0
    while kills < 2:
        wanted = 40 * (kills + 1)  # members succeeded before this kill
        await eventually(
            wf.status,
            lambda s, wanted=wanted: s is not None and _succeeded(s) >= wanted,
            timeout=90,
            interval=0.2,
        )
        victim = workers[kills % 2]
        victim.send_signal(signal.SIGKILL)  # mid-task: its unacked members come back
        await asyncio.to_thread(victim.wait, 10)
        kills += 1
        workers[kills % 2 - 1] = spawn("--concurrency", "4")
    assert await wf.result(timeout=180) == [n * n for n in range(members)]
    status = await wf.status()
    assert status is not None and status.state is WorkflowState.SUCCEEDED
    callback = status.tasks[f"{wf.id}.1"]
    assert callback is not None and callback.attempts == 1
    redis = aioredis.from_url(redis_url)
    try:
        calls = await redis.get(f"{rabbit_app.topology.exchange}:calls:collect")
    finally:
        await redis.aclose()
    assert calls == b"1"  # fired exactly once
    assert sum(1 for t in status.tasks.values() if t is not None and t.attempts > 1) > 0
    await _stop(*workers)


async def test_taskq_status_of_a_workflow_id_shows_its_tree(
    rabbit_app: TaskQueue, spawn: Any, amqp_url: str, redis_url: str, exchange: str
) -> None:
    workers = [spawn("--concurrency", "2")]
    sig = rabbit_app.signature
    flow = taskq.chain(
        sig("wfp.add", [1, 1]), taskq.group(sig("wfp.add", [1]), sig("wfp.fail")), sig("wfp.add")
    )
    wf = await flow.delay()
    with pytest.raises(TaskFailed):
        await wf.result(timeout=60)
    await _stop(*workers)
    env = environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange)

    human = await run_python("-m", "taskq", "status", wf.id, env=env)
    machine = await run_python("-m", "taskq", "status", wf.id, "--json", env=env)

    assert human.returncode == 0, human.stderr
    lines = human.stdout.splitlines()
    assert f"workflow  {wf.id}" in lines and "state     failed" in lines
    assert f"failed    {wf.id}.1.1: ValueError: cannot take 2" in lines
    assert lines[5:] == [
        "chain",
        f"├─ 0  wfp.add  succeeded  attempts=1  [{wf.id}.0]  result=2",
        "├─ 1  group",
        f"│  ├─ 1.0  wfp.add  succeeded  attempts=1  [{wf.id}.1.0]  result=3",
        f"│  └─ 1.1  wfp.fail  failed  attempts=1  [{wf.id}.1.1]  ValueError: cannot take 2",
        "└─ 2  wfp.add  not published",
    ]
    status = WorkflowStatus.model_validate_json(machine.stdout)
    assert status.state is WorkflowState.FAILED and status.tasks[f"{wf.id}.2"] is None
