"""Worker processes that die: kill -9 mid-task, a crash between the outcome and the ack,
and SIGTERM with work in flight. Every confirmed task still ends with one terminal
state, and none is recorded ``succeeded`` twice."""

from __future__ import annotations

import asyncio
import random
import signal

import pytest

from tests.faults.harness import (
    Deployment,
    Figures,
    Fleet,
    StateWatcher,
    finished_count,
    publish,
    queue_depths,
    report,
    stop_cleanly,
    task_ids,
    verdict,
)
from tests.faults.servers import RabbitNode

TASKS = 5000
MAX_KILLS = 8


@pytest.mark.timeout(240)
async def test_workers_killed_mid_task_again_and_again_lose_no_task(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    figures = Figures("1 kill -9 workers mid-task", tasks=TASKS)
    ids = task_ids("kill", TASKS)
    workers = [fleet.start("--concurrency", "16") for _ in range(3)]
    app = deployment.app()
    await app.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            publishing = asyncio.create_task(publish(app, ids, seconds=0.1))
            rng = random.Random(3)
            # Every ~1 s, kill -9 one of the three (busy: tasks take 0.1 s, 16 at once)
            # and start its replacement, as a supervisor would.
            while fleet.kills < MAX_KILLS:
                await asyncio.sleep(rng.uniform(0.7, 1.3))
                if publishing.done() and await finished_count(deployment, ids) > TASKS * 0.9:
                    break
                victim = rng.choice(fleet.alive)
                fleet.kill(victim)
                workers.append(fleet.restart(victim))
            published = await publishing
            result = await verdict(deployment, published.confirmed, fleet=fleet, timeout=120)
        figures.kills = fleet.kills
        figures.record(result)
        figures.notes["publish_failed"] = len(published.failed)
        report(figures)

        assert not published.failed, list(published.failed.values())[:3]
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": TASKS}
        assert fleet.kills >= 3, "the run ended before the workers were killed a few times"
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


@pytest.mark.timeout(120)
async def test_a_worker_killed_after_recording_succeeded_but_before_the_ack_is_not_rerun(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    """The window between "outcome written" and "message acked": the message comes back,
    the store says ``succeeded``, and the redelivery is acked without a second run."""
    doomed = task_ids("die", 3)
    ids = doomed + task_ids("ok", 50)
    figures = Figures("4b killed between succeeded and ack", tasks=len(ids))
    # Each process kills itself right after recording a "die-" task succeeded. One task
    # at a time: the kill never hits another task mid-run (scenario 1 does that).
    hook = {"TASKQ_FAULT_DIE_AFTER_SUCCEEDED": "die-"}
    worker = fleet.start("--concurrency", "1", **hook)
    app = deployment.app()
    await app.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            published = await publish(app, ids, seconds=0.02)
            deaths = 0
            while deaths < 10 and await finished_count(deployment, ids) < len(ids):
                await asyncio.sleep(0.2)
                if not worker.alive:
                    assert worker.proc.returncode == -signal.SIGKILL
                    deaths += 1
                    worker = fleet.restart(worker)
            result = await verdict(deployment, ids, fleet=fleet, timeout=60)
        figures.kills = deaths
        figures.record(result)
        report(figures)

        assert published.confirmed and not published.failed
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": len(ids)}
        assert deaths == len(doomed)
        # The doomed tasks ran once: their redelivery found "succeeded" and was acked.
        assert {i: result.runs[i] for i in doomed} == {i: 1 for i in doomed}
        acked = {
            e["task_id"]
            for e in fleet.events()
            if e.get("event") == "task already succeeded; acking the redelivery without running it"
        }
        assert acked == set(doomed)
        assert not result.ran_twice
        for task_id in doomed:
            status = await app.handle(task_id).status()
            assert status is not None and status.attempts == 1
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


@pytest.mark.timeout(120)
async def test_sigterm_lets_running_tasks_finish_and_leaves_waiting_ones_queued(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    figures = Figures("9 SIGTERM with tasks in flight", tasks=12)
    ids = task_ids("term", 12)
    worker = fleet.start("--concurrency", "4")
    app = deployment.app()
    await app.connect()
    try:
        published = await publish(app, ids, seconds=2.0)
        assert not published.failed

        async def running() -> list[str]:
            states = await asyncio.gather(*(app.handle(i).status() for i in ids))
            return [i for i, s in zip(ids, states, strict=True) if s and s.state == "started"]

        started: list[str] = []
        for _ in range(200):
            started = await running()
            if len(started) == 4:
                break
            await asyncio.sleep(0.05)
        assert len(started) == 4, started
        worker.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(worker.proc.wait, 30) == 0

        middle = await verdict(deployment, ids, fleet=fleet, timeout=0)
        # The four running ones finished; the other eight never started and wait.
        assert sorted(i for i, s in middle.states.items() if s == "succeeded") == sorted(started)
        assert sorted(i for i, s in middle.states.items() if s == "queued") == sorted(
            set(ids) - set(started)
        )
        depths = await queue_depths(node, deployment.exchange)
        assert depths[f"{deployment.exchange}.fault.touch"] == 8, depths

        # Nothing lost: the next worker runs the rest, each once.
        fleet.start("--concurrency", "8")
        result = await verdict(deployment, ids, fleet=fleet, timeout=30)
        figures.record(result)
        report(figures)
        result.assert_promise()
        assert result.by_state() == {"succeeded": 12} and not result.ran_twice
        assert await fleet.terminate() == [0]
    finally:
        await app.close()
