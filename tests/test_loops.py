"""uvloop for taskq's own processes, and never behind an application's back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

from taskq import loops


def test_loops_run_runs_on_uvloop_and_leaves_the_policy_alone() -> None:
    before = asyncio.get_event_loop_policy()

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(loop_module()).startswith("uvloop")
    assert loops.loop_name() == "uvloop"
    assert asyncio.get_event_loop_policy() is before


def test_using_the_library_installs_no_event_loop_policy() -> None:
    # A fresh interpreter: importing taskq, making an app and a worker, sending and
    # running a task on the embedded broker, all on the loop asyncio.run gives.
    code = """
import asyncio
from taskq import TaskQueue, Worker
app = TaskQueue()
@app.task
async def which() -> str:
    return type(asyncio.get_running_loop()).__module__
async def main():
    async with app, Worker(app):
        return await (await which.delay()).result(timeout=10)
module = asyncio.run(main())
print(module, type(asyncio.get_event_loop_policy()).__module__)
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    last = ran.stdout.strip().splitlines()[-1]  # after structlog's default output
    assert last.split() == ["asyncio.unix_events", "asyncio.unix_events"]


async def test_a_loop_on_cancel_requested_ends_when_a_call_swallows_its_cancel() -> None:
    """What ``asyncio.wait_for`` does on 3.11 when a cancel lands as its inner call
    completes: the call returns instead of raising. A ``while True`` loop would then
    run on; one on :func:`loops.cancel_requested` ends at its next turn."""
    turns = 0
    inside = asyncio.Event()

    async def swallowing_call() -> None:
        inside.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return

    async def loop() -> None:
        nonlocal turns
        while not loops.cancel_requested():
            turns += 1
            await swallowing_call()

    task = asyncio.create_task(loop())
    await asyncio.wait_for(inside.wait(), 5)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    assert done == {task} and turns == 1
    assert not loops.cancel_requested()  # this test's own task was never cancelled


async def test_a_worker_heartbeat_stops_when_its_publish_swallows_the_cancel() -> None:
    from taskq.heartbeat import WorkerHeartbeat

    inside = asyncio.Event()
    sends: list[str] = []

    class Channel:
        async def publish(self, event: object) -> None:
            sends.append(event.task)  # type: ignore[attr-defined]
            if event.task == "heartbeat":  # type: ignore[attr-defined]
                inside.set()
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    return

    class FakeEvents:
        exchange = "loops-test"
        channel = Channel()

    beat = WorkerHeartbeat(FakeEvents(), "w-1", 4, lambda: 0, interval=0.01)  # type: ignore[arg-type]
    beat._task = asyncio.create_task(beat._loop())
    await asyncio.wait_for(inside.wait(), 5)
    await asyncio.wait_for(beat.stop(), 5)
    assert sends == ["heartbeat", "offline"]


async def test_a_bench_wait_whose_read_swallows_the_cancel_still_stops() -> None:
    """``taskq bench`` runs its phases to their end, polling the store for records; a
    Ctrl-C that a read swallowed (as above) would let the whole run go on and exit 0.
    Its waits stop at their next look instead, with ``CancelledError``."""
    from taskq.bench.records import wait_finished
    from taskq.stores.memory import MemoryStore

    inside = asyncio.Event()
    reads = 0

    class SwallowingStore(MemoryStore):
        async def get_many(self, task_ids: Any) -> list[Any]:
            nonlocal reads
            reads += 1
            if reads == 1:  # the first read swallows the cancel; the next ones answer
                inside.set()
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass
            return [None] * len(task_ids)  # never finished

    waiting = asyncio.create_task(wait_finished(SwallowingStore(), ["a"], stall_timeout=60))
    await asyncio.wait_for(inside.wait(), 5)
    waiting.cancel()
    done, _ = await asyncio.wait([waiting], timeout=5)
    assert done == {waiting} and waiting.cancelled()
    assert reads == 1


def test_raise_if_cancel_requested_outside_a_cancelled_task_does_nothing() -> None:
    async def main() -> str:
        loops.raise_if_cancel_requested()
        return "ran on"

    assert asyncio.run(main()) == "ran on"
