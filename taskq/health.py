"""Liveness as a file's mtime: a worker process touches its health file from its event
loop every ``interval`` seconds, so a loop that is wedged (a sync call inside an async
task, a deadlock) stops touching it, and whoever watches the file sees it go stale.

An orchestrator's probe compares the mtime with the clock, e.g. a Kubernetes exec
probe for ``taskq worker ... --health-file /tmp/taskq-health``::

    livenessProbe:
      exec:
        command: ["sh", "-c", "test $(( $(date +%s) - $(stat -c %Y /tmp/taskq-health) )) -lt 30"]
      periodSeconds: 10

Under the supervisor (``--processes`` > 1 or ``--max-tasks-per-child``) each child
touches ``PATH.<slot>`` and the supervisor kills and restarts a child whose file went
stale; the supervisor itself touches ``PATH``, so the probe above is the same in both
modes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator

from taskq.health_files import DEFAULT_INTERVAL, STALE_INTERVALS, age, touch
from taskq.logs import get_logger

__all__ = ["DEFAULT_INTERVAL", "STALE_INTERVALS", "age", "heartbeat", "touch"]

log = get_logger("taskq.health")


@contextlib.asynccontextmanager
async def heartbeat(
    path: str | os.PathLike[str] | None, interval: float = DEFAULT_INTERVAL
) -> AsyncIterator[None]:
    """Touch ``path`` now and every ``interval`` seconds while the block runs, from a
    task of the running event loop (not a thread: a thread would keep touching while
    the loop is wedged). ``None``: no health file."""
    if path is None:
        yield
        return

    async def beat() -> None:
        while True:
            try:
                touch(path)
            except OSError as exc:  # a full disk must not stop the worker
                log.warning("could not touch the health file", path=str(path), error=str(exc))
            await asyncio.sleep(interval)

    task = asyncio.create_task(beat(), name="taskq-heartbeat")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
