"""The app that fault-test worker processes run: ``python -m taskq worker
tests.faults.fault_app:app``, configured by the TASKQ_* variables like any deployment.

Its tasks count every run of every key in a Redis hash (``TASKQ_FAULT_COUNTER_URL``,
kept apart from the status store so that a store outage does not lose the count):
a side effect that survives a worker killed with -9, for the "ran twice" figure.

A test hook, here and not in the library: with ``TASKQ_FAULT_DIE_AFTER_SUCCEEDED=<prefix>``
the process kills itself (SIGKILL) right after the store recorded ``succeeded`` for a
task id starting with ``<prefix>``: the window between "outcome written" and "message
acked" that a crash can hit.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from taskq import TaskQueue, TaskState, TaskStatus
from taskq.stores.base import Write
from taskq.stores.redis import RedisStore

EXCHANGE = os.environ.get("TASKQ_EXCHANGE", "taskq")
#: The Redis hash of run counts, keyed by the task's ``key`` argument.
RUNS_KEY = f"{EXCHANGE}:fault-runs"  # harness.runs_key()
_counter: list[aioredis.Redis] = []  # one client per worker process, made on first use


class _DieAfterSucceeded(RedisStore):
    def __init__(self, url: str, prefix: str, die_prefix: str) -> None:
        super().__init__(url, prefix=prefix)
        self.die_prefix = die_prefix

    async def _write(self, task_id: str, name: str, state: TaskState, **kw: Any) -> Any:
        written = await super()._write(task_id, name, state, **kw)
        self._maybe_die([written])
        return written

    async def write_many(self, writes: Sequence[Write]) -> list[TaskStatus | None]:
        """The worker's batched writes (taskq.stores.batch) come this way."""
        written = await super().write_many(writes)
        self._maybe_die(written)
        return written

    def _maybe_die(self, written: Sequence[TaskStatus | None]) -> None:
        for status in written:
            if status is not None and status.state is TaskState.SUCCEEDED:
                if status.id.startswith(self.die_prefix):
                    os.kill(os.getpid(), signal.SIGKILL)  # outcome written, message not acked


def _store() -> RedisStore | None:
    die_prefix = os.environ.get("TASKQ_FAULT_DIE_AFTER_SUCCEEDED")
    if not die_prefix:
        return None  # TASKQ_STORE_URL, as any app
    return _DieAfterSucceeded(os.environ["TASKQ_STORE_URL"], EXCHANGE, die_prefix)


app = TaskQueue(store=_store())


def counter() -> aioredis.Redis:
    if not _counter:
        _counter.append(aioredis.from_url(os.environ["TASKQ_FAULT_COUNTER_URL"]))
    return _counter[0]


@app.task(name="fault.touch")
async def touch(key: str, seconds: float = 0.0) -> int:
    """Counts this run of ``key``, then sleeps ``seconds`` (a kill in that sleep is a
    kill mid-task: the side effect happened, the message is not acked)."""
    runs = int(await counter().hincrby(RUNS_KEY, key, 1))
    await asyncio.sleep(seconds)
    return runs


@app.task(name="fault.args")
async def typed(count: int, label: str) -> str:
    """A task with a signature, for malformed arguments to miss."""
    return label * count


# -- poison messages, retries, time limits (scenarios 5, 7, 8) ----------------------


@app.task(name="fault.poison", max_retries=2)
async def poison(key: str) -> None:
    """Kills its worker process on every attempt, as a segfault or the OOM killer would."""
    await counter().hincrby(RUNS_KEY, key, 1)
    os._exit(1)


@app.task(name="fault.flaky", retry_backoff=0.5, retry_jitter=False)
async def flaky(key: str, failures: int = 2) -> int:
    """Fails ``failures`` times, then succeeds; each start's time goes in a Redis list."""
    runs = int(await counter().hincrby(RUNS_KEY, key, 1))
    await counter().rpush(f"{EXCHANGE}:fault-starts:{key}", repr(time.time()))
    if runs <= failures:
        raise ConnectionError(f"attempt {runs} of {key} failed")
    return runs


@app.task(name="fault.slow_async", timeout=0.5, max_retries=1, retry_backoff=0.1)
async def slow_async(key: str, seconds: float) -> None:
    await counter().hincrby(RUNS_KEY, key, 1)
    await asyncio.sleep(seconds)


@app.task(name="fault.slow_sync", timeout=0.5, max_retries=0)
def slow_sync(key: str, seconds: float) -> None:
    time.sleep(seconds)  # cannot be interrupted: the worker process is replaced
