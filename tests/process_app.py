"""An app for tests that run workers as real subprocesses (``python -m taskq worker
tests.process_app:app``), configured by the TASKQ_* environment variables."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from taskq import TaskQueue

app = TaskQueue()
_redis: list[aioredis.Redis] = []  # one client per worker process, made on first use


@app.task(name="proc.touch")
async def touch(key: str, seconds: float = 0.0) -> int:
    """Counts its runs in Redis (a side effect that survives a killed worker), then
    sleeps ``seconds``."""
    if not _redis:
        _redis.append(aioredis.from_url(os.environ["TASKQ_TEST_REDIS_URL"]))
    runs = int(await _redis[0].incr(f"{app.topology.exchange}:runs:{key}"))
    await asyncio.sleep(seconds)
    return runs
