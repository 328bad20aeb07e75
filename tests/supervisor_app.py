"""The app that tests/test_supervisor.py runs under ``taskq worker --processes``,
configured by the TASKQ_* variables of the subprocess."""

from __future__ import annotations

import asyncio
import os
import time

import redis.asyncio as aioredis

from taskq import TaskQueue

app = TaskQueue()
_redis: list[aioredis.Redis] = []  # one client per worker process, made on first use


@app.task(name="sup.touch", max_retries=0)
async def touch(key: str, seconds: float = 0.0) -> int:
    """Counts its runs in Redis (it survives a killed worker), sleeps ``seconds``, and
    returns the pid of the process that ran it."""
    if not _redis:
        _redis.append(aioredis.from_url(os.environ["TASKQ_TEST_REDIS_URL"]))
    await _redis[0].incr(f"{app.topology.exchange}:runs:{key}")
    await asyncio.sleep(seconds)
    return os.getpid()


@app.task(name="sup.wedge", max_retries=0)
async def wedge(seconds: float) -> None:
    time.sleep(seconds)  # noqa: ASYNC251 -- the point: a blocking call wedges the loop


#: Every task name above, for the tests' clean-up.
TASK_NAMES = list(app.tasks)
