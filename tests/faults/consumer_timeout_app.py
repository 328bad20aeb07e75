"""The app of the consumer-timeout scenario (``test_consumer_timeout.py``): ``python -m
taskq worker tests.faults.consumer_timeout_app:app``, configured by the TASKQ_*
variables like ``fault_app``, with the broker's ``consumer_timeout`` from
``TASKQ_FAULT_CONSUMER_TIMEOUT`` (seconds, default 3).

Three tasks, each on a queue of its own, that take ``seconds`` (default 1.2) within a
limit of 1.5 s, half the broker's timeout at most; each counts its runs of ``key`` in
the same Redis hash as ``fault_app`` (``harness.runs_key``), so the oracle reads them.
"""

from __future__ import annotations

import asyncio
import os

import redis.asyncio as aioredis

from taskq import TaskQueue

EXCHANGE = os.environ.get("TASKQ_EXCHANGE", "taskq")
RUNS_KEY = f"{EXCHANGE}:fault-runs"  # harness.runs_key()
#: The names of the scenario's tasks, one queue each.
TASKS = ("ct.first", "ct.second", "ct.third")
#: Each task's time limit (seconds): at most half the broker's consumer_timeout.
LIMIT = 1.5
_counter: list[aioredis.Redis] = []

app = TaskQueue(consumer_timeout=float(os.environ.get("TASKQ_FAULT_CONSUMER_TIMEOUT", "3")))


def counter() -> aioredis.Redis:
    if not _counter:
        _counter.append(aioredis.from_url(os.environ["TASKQ_FAULT_COUNTER_URL"]))
    return _counter[0]


async def _run(key: str, seconds: float) -> int:
    runs = int(await counter().hincrby(RUNS_KEY, key, 1))
    await asyncio.sleep(seconds)
    return runs


@app.task(name=TASKS[0], timeout=LIMIT)
async def first(key: str, seconds: float = 1.2) -> int:
    return await _run(key, seconds)


@app.task(name=TASKS[1], timeout=LIMIT)
async def second(key: str, seconds: float = 1.2) -> int:
    return await _run(key, seconds)


@app.task(name=TASKS[2], timeout=LIMIT)
async def third(key: str, seconds: float = 1.2) -> int:
    return await _run(key, seconds)
