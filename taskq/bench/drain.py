"""The drain: tasks already queued, run by the worker processes as fast as they go.

The rate is counted from the records, first ``started_at`` to last ``finished_at``:
the workers' start-up (importing, connecting) is not in it, and neither is the bench's
own polling. While the queue still holds messages the bench only looks at its depth
(one passive declare now and then), so it takes no CPU from the workers; the records
are read once it is empty.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

from taskq.app import TaskQueue
from taskq.bench.config import NOOP_TASK
from taskq.bench.procs import ProcessGroup
from taskq.bench.records import wait_finished
from taskq.bench.timing import per_second
from taskq.errors import TaskqError
from taskq.loops import raise_if_cancel_requested
from taskq.status import TaskState, utcnow

#: Seconds without progress (queue depth or finished records) before the bench gives up.
STALL_TIMEOUT = 60.0
#: Seconds between two looks at the queue's depth.
DEPTH_INTERVAL = 0.25
#: Seconds between two looks for the workers' consumers, before the drain.
CONSUMERS_INTERVAL = 0.01
#: Seconds to wait once the queue is empty, for the tasks in the workers' hands.
SETTLE_PAUSE = 0.5


@dataclass(frozen=True)
class Drained:
    per_s: float
    #: CPU the worker processes used per task (all of them together), in µs: with a
    #: core's worth per process, the workers' own CPU is what limits the rate.
    worker_cpu_us: float | None


async def drain(app: TaskQueue, ids: Sequence[str], workers: ProcessGroup) -> Drained:
    """Tasks per second through ``workers`` (taskq's, or the ceiling's consumers) for the
    tasks ``ids``, already queued, and their CPU per task (counted from when they all
    consume: not their start-up)."""
    cpu_before = await _consuming(app, workers)
    since = utcnow()
    await _wait_queue_empty(app, workers)
    await asyncio.sleep(SETTLE_PAUSE)
    records = await wait_finished(app.store, ids, stall_timeout=STALL_TIMEOUT, check=workers.check)
    failed = [r for r in records if r.state is not TaskState.SUCCEEDED]
    if failed:
        raise TaskqError(f"bench: {len(failed)} no-op tasks failed, e.g. {failed[0].error}")
    starts = [r.started_at for r in records if r.started_at is not None]
    ends = [r.finished_at for r in records if r.finished_at is not None]
    if not starts or not ends:
        raise TaskqError("bench: the store recorded no start or finish times")
    cpu_after = workers.cpu_seconds()
    # Per task started once every process consumed: a process up early may have run
    # some before the last one was (small runs: all of them; then there is no figure).
    counted = sum(1 for r in records if r.started_at is not None and r.started_at >= since)
    cpu_us = (
        round((cpu_after - cpu_before) / counted * 1e6, 1)
        if cpu_before is not None and cpu_after is not None and counted
        else None
    )
    return Drained(per_second(len(ids), (max(ends) - min(starts)).total_seconds()), cpu_us)


async def _consuming(app: TaskQueue, workers: ProcessGroup) -> float | None:
    """Wait until every worker process consumes; their CPU seconds at that moment
    (start-up, imports and connecting, left out)."""
    deadline = time.monotonic() + STALL_TIMEOUT
    while time.monotonic() < deadline:
        raise_if_cancel_requested()
        workers.check()
        info = await app.broker.queue_info(NOOP_TASK)
        if info is not None and info.consumers >= workers.config.processes:
            break
        await asyncio.sleep(CONSUMERS_INTERVAL)
    return workers.cpu_seconds()


async def _wait_queue_empty(app: TaskQueue, workers: ProcessGroup) -> None:
    ready, progress_at = -1, time.monotonic()
    while True:
        raise_if_cancel_requested()
        workers.check()
        info = await app.broker.queue_info(NOOP_TASK)
        if info is None or info.ready == 0:
            return
        if info.ready != ready:
            ready, progress_at = info.ready, time.monotonic()
        elif time.monotonic() - progress_at > STALL_TIMEOUT:
            raise TaskqError(
                f"bench: {ready} tasks stayed queued for {STALL_TIMEOUT:g}s; are the workers up?"
            )
        await asyncio.sleep(DEPTH_INTERVAL)
