"""The ceiling: the same tasks drained by plain aiormq and redis-py doing only the I/O.

``--processes`` processes of :mod:`.ceiling_consumer` consume the same messages (taskq
task messages, queued by ``send_many`` as for the drain) from the same quorum queue
with the same prefetch, write each task's ``started`` and ``succeeded`` records as the
worker does and ack with ``multiple=True``. The rate is counted as the drain's, from
the records (:func:`~taskq.bench.drain.drain`), and so is the CPU per task:
``ratios.drain_vs_ceiling`` is taskq's share of what its I/O allows.

It writes with the Redis store's scripts: with another store there is no ceiling
(:func:`absent_reason`), and its figures are ``None``.
"""

from __future__ import annotations

import asyncio
import sys

from taskq.bench.ceiling_consumer import CeilingArgs
from taskq.bench.config import NOOP_TASK, BenchConfig
from taskq.bench.procs import ProcessGroup
from taskq.errors import TaskqError
from taskq.topology import Topology
from taskq.urls import scheme_of

#: Seconds the consumers may take to import and connect.
READY_TIMEOUT = 60.0
#: Store URL schemes the ceiling can write to: the Redis store's.
CEILING_SCHEMES = ("redis", "rediss")


def absent_reason(config: BenchConfig) -> str | None:
    """Why this run has no ceiling, or ``None`` when it has one."""
    scheme = scheme_of(config.store_url)
    if scheme in CEILING_SCHEMES:
        return None
    return (
        f"the ceiling writes records with the Redis store's scripts; this run's store is "
        f"{scheme}://"
    )


class CeilingConsumers(ProcessGroup):
    """``config.processes`` ceiling consumers on the no-op task's queue."""

    what = "a ceiling consumer"

    def __init__(self, config: BenchConfig, *, prefix: str, ttl: float | None) -> None:
        super().__init__(config)
        self.args = CeilingArgs(
            broker_url=config.broker_url,
            store_url=config.store_url,
            queue=Topology(config.exchange).queue_name(NOOP_TASK),
            prefix=prefix,
            ttl=ttl,
            prefetch=config.concurrency,
        )

    async def start(self) -> None:
        """Start the processes; once every one is connected, let them all consume."""
        command = [sys.executable, "-m", "taskq.bench.ceiling_consumer", *self.args.argv()]
        started = [await self._spawn(command, piped=True) for _ in range(self.config.processes)]
        async with asyncio.timeout(READY_TIMEOUT):
            for process in started:
                assert process.stdout is not None
                if await process.stdout.readline() != b"ready\n":
                    self.check()  # it died: its log says why
                    raise TaskqError("bench: a ceiling consumer did not say it was ready")
        for process in started:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
