"""The three ways an application enqueues, each timed on its own.

- sequential: one ``await task.delay(...)`` after the other, what a web view does;
  each call waits for its ``queued`` record and its publisher confirm;
- concurrent: :data:`~taskq.bench.config.IN_FLIGHT` ``delay()`` calls pending at once,
  as many requests of a busy server would be;
- bulk: ``await task.send_many([...])`` in chunks of
  :data:`~taskq.bench.config.BULK_CHUNK` calls.

Status tracking is on, as in real apps: every task gets its ``queued`` record in the
store before its publish. Each phase returns the ids it sent, for the drain.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from taskq.bench.config import BULK_CHUNK, IN_FLIGHT
from taskq.bench.timing import p50_ms, per_second, pipelined
from taskq.handle import TaskHandle
from taskq.task import Task


@dataclass(frozen=True)
class Enqueued:
    """A phase's rate and the ids of the tasks it sent."""

    per_s: float
    ids: list[str]
    #: One call's median time in ms, for the sequential phase (each call alone).
    p50_ms: float | None = None


async def enqueue_sequential(task: Task[Any, Any], payload: str, count: int) -> Enqueued:
    ids = []
    took: list[float] = []
    started = time.perf_counter()
    for _ in range(count):
        before = time.perf_counter()
        ids.append((await task.delay(payload)).id)
        took.append(time.perf_counter() - before)
    return Enqueued(per_second(count, time.perf_counter() - started), ids, p50_ms(took))


async def enqueue_concurrent(task: Task[Any, Any], payload: str, count: int) -> Enqueued:
    ids = [""] * count

    async def send(index: int) -> None:
        ids[index] = (await task.delay(payload)).id

    seconds = await pipelined(count, IN_FLIGHT, send)
    return Enqueued(per_second(count, seconds), ids)


async def enqueue_bulk(task: Task[Any, Any], payload: str, count: int) -> Enqueued:
    """``send_many`` of BULK_CHUNK calls at a time, one batch after the other."""
    ids: list[str] = []
    started = time.perf_counter()
    for start in range(0, count, BULK_CHUNK):
        calls: list[tuple[tuple[str], dict[str, Any]]] = [
            ((payload,), {}) for _ in range(min(BULK_CHUNK, count - start))
        ]
        handles: list[TaskHandle] = await task.send_many(calls)
        ids.extend(handle.id for handle in handles)
    return Enqueued(per_second(count, time.perf_counter() - started), ids)
