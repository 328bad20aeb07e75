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
import time
from collections.abc import AsyncIterator
from pathlib import Path

import structlog

log = structlog.get_logger("taskq.health")

#: Seconds between two touches of a health file.
DEFAULT_INTERVAL = 5.0

#: A health file not touched for this many intervals belongs to a wedged process.
STALE_INTERVALS = 6


def touch(path: str | os.PathLike[str]) -> None:
    """Create ``path`` or set its mtime to now."""
    Path(path).touch()


def age(path: str | os.PathLike[str], *, since: float) -> float | None:
    """Seconds since ``path`` was last touched; ``None`` if it was not touched since
    ``since`` (a ``time.time()``: when its process started, so a file left by the
    process before it does not count)."""
    try:
        mtime = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    return None if mtime < since else time.time() - mtime


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
