"""Tasks for workflows run by worker processes (``python -m taskq worker
tests.workflow_app:app``), configured by the TASKQ_* environment variables."""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from taskq import TaskQueue

app = TaskQueue()
_redis: list[aioredis.Redis] = []  # one client per worker process, made on first use


async def _count(what: str) -> int:
    """Counts calls in Redis: a side effect that survives a killed worker."""
    if not _redis:
        _redis.append(aioredis.from_url(os.environ["TASKQ_TEST_REDIS_URL"]))
    return int(await _redis[0].incr(f"{app.topology.exchange}:calls:{what}"))


@app.task(name="wfp.add")
async def add(x: int, y: int) -> int:
    await _count(f"add:{os.getpid()}")
    return x + y


@app.task(name="wfp.square")
async def square(x: int, seconds: float = 0.0) -> int:
    await asyncio.sleep(seconds)
    return x * x


@app.task(name="wfp.collect")
async def collect(values: list[int]) -> list[int]:
    await _count("collect")
    return values


@app.task(name="wfp.fail", max_retries=0)
async def fail(x: int) -> int:
    raise ValueError(f"cannot take {x}")
