"""Latency at a light, steady rate: how long a task waits when nothing is queued.

Tasks are published at :data:`~taskq.bench.config.LATENCY_RATE` a second, each on
its schedule whatever the confirms of the previous ones do, to workers already
running. Each sample is from the wall clock just before ``delay()`` to the record's
``started_at`` (publish → start) and ``finished_at`` (publish → succeeded), all on
this machine's clock.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.bench.records import wait_finished
from taskq.bench.timing import paced
from taskq.errors import TaskqError
from taskq.handle import TaskHandle
from taskq.stores import StatusStore
from taskq.task import Task

#: Seconds without any task finishing before the phase gives up.
STALL_TIMEOUT = 30.0


@dataclass(frozen=True)
class Percentiles:
    """Milliseconds."""

    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, samples: Sequence[float]) -> Percentiles:
        """Interpolated percentiles (``statistics.quantiles``, inclusive)."""
        if len(samples) == 1:
            only = round(samples[0], 3)
            return cls(only, only, only)
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(*(round(cuts[k - 1], 3) for k in (50, 95, 99)))


@dataclass(frozen=True)
class Latency:
    start: Percentiles
    succeeded: Percentiles


async def measure_latency(
    task: Task[Any, Any],
    payload: str,
    count: int,
    rate: float,
    store: StatusStore,
    check: Callable[[], None],
) -> Latency:
    published = [0.0] * count

    async def send(index: int) -> TaskHandle:
        published[index] = time.time()
        return await task.delay(payload)

    handles = await paced(count, rate, send)
    records = await wait_finished(
        store, [h.id for h in handles], stall_timeout=STALL_TIMEOUT, check=check
    )
    to_start, to_end = [], []
    for sent, record in zip(published, records, strict=True):
        if record.started_at is not None and record.finished_at is not None:
            to_start.append((record.started_at.timestamp() - sent) * 1000)
            to_end.append((record.finished_at.timestamp() - sent) * 1000)
    if not to_start:
        raise TaskqError("bench: the store recorded no start or finish times")
    return Latency(Percentiles.of(to_start), Percentiles.of(to_end))
