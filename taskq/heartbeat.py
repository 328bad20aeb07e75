"""A worker's heartbeat on the events exchange: ``worker.heartbeat`` every
:data:`HEARTBEAT_INTERVAL` seconds while it runs, ``worker.offline`` when it stops.

What the dashboard's workers page is built from (host, pid, tasks running, concurrency,
last seen): a worker no one has heard from for :data:`OFFLINE_AFTER` seconds is gone.
Sent only when the app's events are on (``events=True`` / ``TASKQ_EVENTS=1``), like
every event: best-effort, without confirms, never in a task's way. A heartbeat travels
as a :class:`~taskq.events.TaskEvent` so every subscriber decodes it: ``state`` is
``"worker"``, ``task`` is ``"heartbeat"`` or ``"offline"`` (routing key
``worker.heartbeat``), ``task_id`` the worker's id, with ``running`` and
``concurrency`` set:

    {"task_id": "web-1-4242", "task": "heartbeat", "state": "worker", "attempt": null,
     "time": "...", "exchange": "shop", "pid": 4242, "host": "web-1",
     "running": 3, "concurrency": 16, ...}
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from taskq.events import EMIT_TIMEOUT, TaskEvent
from taskq.logs import get_logger
from taskq.loops import cancel_requested
from taskq.status import utcnow

if TYPE_CHECKING:
    from taskq.events import Events
    from taskq.worker import Worker

log = get_logger(__name__)

#: Seconds between two heartbeats of a worker.
HEARTBEAT_INTERVAL = 5.0
#: Seconds without a heartbeat after which a worker counts as gone.
OFFLINE_AFTER = 3 * HEARTBEAT_INTERVAL
#: The ``state`` of worker events, the first word of their routing key.
WORKER_STATE = "worker"

_HOST = socket.gethostname()


def worker_event(
    events: Events, kind: str, worker_id: str, running: int, concurrency: int
) -> TaskEvent:
    return TaskEvent(
        task_id=worker_id,
        task=kind,
        state=WORKER_STATE,
        attempt=None,
        time=utcnow().isoformat(),
        exchange=events.exchange,
        pid=os.getpid(),
        host=_HOST,
        running=running,
        concurrency=concurrency,
    )


class WorkerHeartbeat:
    """Started by :meth:`Worker.start` when the app has events, stopped by
    :meth:`Worker.stop`."""

    def __init__(
        self,
        events: Events,
        worker_id: str,
        concurrency: int,
        running: Callable[[], int],
        interval: float | None = None,
    ) -> None:
        self.events = events
        self.worker_id = worker_id
        self.concurrency = concurrency
        self.running = running
        self.interval = HEARTBEAT_INTERVAL if interval is None else interval
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start_for(cls, worker: Worker) -> WorkerHeartbeat | None:
        """The running heartbeat of ``worker``; ``None`` while its app's events are off."""
        events = worker.app.events
        if events is None:
            return None
        beat = cls(events, worker.id, worker.concurrency, worker.running_count)
        beat._task = asyncio.create_task(beat._loop(), name=f"taskq-heartbeat-{worker.id}")
        return beat

    async def _send(self, kind: str) -> None:
        event = worker_event(self.events, kind, self.worker_id, self.running(), self.concurrency)
        try:
            async with asyncio.timeout(EMIT_TIMEOUT):
                await self.events.channel.publish(event)
        except Exception as exc:  # best-effort, as every event
            log.debug("heartbeat dropped", worker=self.worker_id, error=repr(exc))

    async def _loop(self) -> None:
        while not cancel_requested():  # not `while True`: see cancel_requested
            await self._send("heartbeat")
            await asyncio.sleep(self.interval)

    async def stop(self) -> None:
        """Stop beating and say ``worker.offline``, so the page need not wait it out."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._send("offline")
