"""A stopping ``taskq worker`` is bounded by its grace period, even when a sync task
sits in a call that cannot be cancelled."""

from __future__ import annotations

import asyncio
import signal
import time

from taskq import TaskQueue, TaskState
from taskq.cli import RET_OK
from tests.helpers import eventually
from tests.test_cli import StartWorker, env, start_worker, taskq

__all__ = ["env", "start_worker"]  # the fixtures, shared with tests/test_cli.py


async def test_sigterm_exits_after_the_grace_period_even_while_a_sync_task_blocks(
    env: dict[str, str], start_worker: StartWorker, redis_url: str, exchange: str
) -> None:
    worker = await start_worker("--grace", "0.5")
    sent = await taskq("send", "cli.block", "--args", "[60]", env=env)
    async with TaskQueue(broker="memory://", store=redis_url, exchange=exchange) as app:
        handle = app.handle(sent.lines[0])
        await eventually(handle.status, lambda s: s is not None and s.state == "started")

        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)

        assert await asyncio.wait_for(worker.proc.wait(), 15) == RET_OK
        assert time.monotonic() - began < 10
        status = await handle.status()
    # Not finished: its message went back to the queue for another worker.
    assert status is not None and status.state is TaskState.STARTED
    assert "worker stopped" in worker.events()
    assert "sync tasks still running after the grace period; exiting without them" in (
        worker.events()
    )
