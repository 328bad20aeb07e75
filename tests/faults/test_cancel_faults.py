"""Cancels where things break (issue 10): a worker killed while it holds cancelled
messages, and cancels during a broker restart. The status store carries the cancel, so
neither loses it: a cancelled task never starts again, on any worker."""

from __future__ import annotations

import asyncio
import signal

import pytest
import redis.asyncio as aioredis

from taskq import TaskQueue, TaskState
from tests.faults.harness import (
    TOUCH,
    Deployment,
    Fleet,
    WorkerProc,
    runs_key,
    stop_cleanly,
    task_ids,
)
from tests.faults.servers import RabbitNode
from tests.helpers import eventually


async def _runs(deployment: Deployment, ids: list[str]) -> dict[str, int]:
    """How often each task's body ran (``fault.touch`` counts its runs in Redis)."""
    client = aioredis.from_url(deployment.counter_url)
    try:
        counts = await client.hmget(runs_key(deployment.exchange), ids)
    finally:
        await client.aclose()
    return {task_id: int(n or 0) for task_id, n in zip(ids, counts, strict=True)}


async def _states(app: TaskQueue, ids: list[str]) -> dict[str, TaskState | None]:
    records = [await app.handle(task_id).status() for task_id in ids]
    return {i: None if r is None else r.state for i, r in zip(ids, records, strict=True)}


async def _all_cancelled(app: TaskQueue, ids: list[str]) -> None:
    await eventually(
        lambda: _states(app, ids),
        lambda s: set(s.values()) == {TaskState.CANCELLED},
        timeout=30,
    )


async def _drained(app: TaskQueue) -> None:
    await eventually(
        lambda: app.broker.queue_info(TOUCH),
        lambda info: info is not None and info.ready == 0,
        timeout=30,
    )


@pytest.mark.timeout(120)
async def test_a_worker_killed_while_it_holds_cancelled_messages_runs_none_of_them(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    """A worker holds a running task and three prefetched ones, and stops answering
    (SIGSTOP); all four are cancelled; it is killed -9. The broker hands the four to
    another worker, which acks each without running it."""
    app = deployment.app()
    await app.connect()
    first: WorkerProc | None = None
    try:
        first = fleet.start("--concurrency", "4")
        await fleet.wait_started(first)
        running, *held = task_ids("cancel-held", 4)
        await app.send(TOUCH, args=[running, 60], task_id=running)
        # Its body has run (counted), not only its `started` recorded: the record comes
        # first, and a stop between the two would leave a task that never ran.
        await eventually(lambda: _runs(deployment, [running]), lambda r: r[running] == 1)
        first.proc.send_signal(signal.SIGSTOP)  # holds what it has, answers nothing
        for task_id in held:
            await app.send(TOUCH, args=[task_id], task_id=task_id)
        await _drained(app)  # the three are in the stopped worker's prefetch now

        answers = await asyncio.gather(*(app.cancel(task_id) for task_id in [running, *held]))
        # The held ones never started: cancelled at once. The running one's worker
        # cannot answer: no new attempt of it will start.
        assert answers == [True] * 4
        states = await _states(app, held)
        assert set(states.values()) == {TaskState.CANCELLED}
        marked = await app.handle(running).status()
        assert marked is not None and marked.cancel_requested

        second = fleet.start("--concurrency", "4")
        await fleet.wait_started(second)
        fleet.kill(first)  # the four come back, to the second worker
        every = [running, *held]
        await _all_cancelled(app, every)
        await eventually(
            lambda: app.broker.queue_info(TOUCH),
            lambda info: info is not None and info.ready == 0 and info.consumers == 1,
        )
        assert await _runs(deployment, every) == {running: 1, **{i: 0 for i in held}}
        status = await app.handle(running).status()
        assert status is not None and status.attempts == 1  # its redelivery did not start
        assert await app.dead_letters() == []
        await stop_cleanly(fleet, node)
    finally:
        if first is not None and first.alive:
            fleet.kill(first)
        await app.close()


@pytest.mark.timeout(120)
async def test_cancels_during_a_broker_restart_hold_and_interrupt_the_running_task(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    """A worker (concurrency 1) runs a long async task; ten tasks wait in the queue and
    ten in the delay levels. With the broker down, the twenty are cancelled (the store
    alone) and the running one is asked to stop. Once the broker is back, the worker
    reconnected is told and interrupts it, and the twenty never run."""
    app = deployment.app(publish_timeout=30)  # the control message waits out the restart
    await app.connect()
    try:
        worker = fleet.start("--concurrency", "1")
        await fleet.wait_started(worker)
        running = task_ids("cancel-running", 1)[0]
        queued = task_ids("cancel-queued", 10)
        delayed = task_ids("cancel-delayed", 10)
        await app.send(TOUCH, args=[running, 60], task_id=running)
        await eventually(lambda: _runs(deployment, [running]), lambda r: r[running] == 1)
        for task_id in queued:  # behind the running one: prefetch 1
            await app.send(TOUCH, args=[task_id], task_id=task_id)
        for task_id in delayed:
            await app.send(TOUCH, args=[task_id], task_id=task_id, countdown=3)

        await asyncio.to_thread(node.stop_app)
        waiting = [*queued, *delayed]
        assert await asyncio.gather(*(app.cancel(task_id) for task_id in waiting)) == [True] * 20
        interrupting = asyncio.create_task(app.cancel(running))
        await asyncio.sleep(1)
        await asyncio.to_thread(node.start_app)
        assert await interrupting is True
        status = await app.handle(running).status()
        assert status is not None and status.state is TaskState.CANCELLED

        await asyncio.sleep(3)  # the delayed ones come due, and are acked unrun
        every = [running, *waiting]
        await _all_cancelled(app, every)
        await eventually(
            lambda: app.broker.queue_info(TOUCH),
            lambda info: info is not None and info.ready == 0,
            timeout=30,
        )
        assert await _runs(deployment, every) == {running: 1, **{i: 0 for i in waiting}}
        assert await app.dead_letters() == []
        assert worker.alive, "the worker died instead of reconnecting"
        events = [e.get("event") for e in fleet.events()]
        assert "interrupting a cancelled task" in events
        await stop_cleanly(fleet, node)
    finally:
        await app.close()
