"""The active scheduler says so on the events exchange, so that a dashboard (or anyone
subscribed) can tell which one it is: RabbitMQ tells only that scheduler itself (single
active consumer, :mod:`taskq.schedules.leader`).

While active, a scheduler publishes ``scheduler.active`` at once and then every
:data:`ANNOUNCE_INTERVAL` seconds; ``scheduler.passive`` when it stops being active (it
lost its place, or stopped). A scheduler no one has heard from for :data:`ACTIVE_AFTER`
seconds no longer counts as active. Sent only while the app's events are on
(``events=True`` / ``TASKQ_EVENTS=1``), like every event: best-effort, without
confirms, never in a tick's way. It travels as a :class:`~taskq.events.TaskEvent`, as a
worker's heartbeat does (:mod:`taskq.heartbeat`), so every subscriber decodes it:
``state`` is ``"scheduler"``, ``task`` is ``"active"`` or ``"passive"``, ``task_id``
the scheduler's id:

    {"task_id": "3f9c2a1b7d4e", "task": "active", "state": "scheduler", "attempt": null,
     "time": "...", "exchange": "shop", "pid": 4242, "host": "cron-1", ...}
"""

from __future__ import annotations

import asyncio
import os
import socket
from typing import TYPE_CHECKING

from taskq.events import EMIT_TIMEOUT, TaskEvent
from taskq.logs import get_logger
from taskq.loops import cancel_requested
from taskq.status import utcnow

if TYPE_CHECKING:
    from taskq.events import Events
    from taskq.schedules.scheduler import Scheduler

log = get_logger(__name__)

#: Seconds between two ``scheduler.active`` events of the active scheduler.
ANNOUNCE_INTERVAL = 5.0
#: Seconds without a ``scheduler.active`` after which a scheduler counts as not active.
ACTIVE_AFTER = 3 * ANNOUNCE_INTERVAL
#: The ``state`` of scheduler events, the first word of their routing key.
SCHEDULER_STATE = "scheduler"

_HOST = socket.gethostname()


def scheduler_event(events: Events, kind: str, scheduler_id: str) -> TaskEvent:
    return TaskEvent(
        task_id=scheduler_id,
        task=kind,
        state=SCHEDULER_STATE,
        attempt=None,
        time=utcnow().isoformat(),
        exchange=events.exchange,
        pid=os.getpid(),
        host=_HOST,
    )


class SchedulerPresence:
    """Started by :meth:`Scheduler.start` when the app has events, stopped by
    :meth:`Scheduler.stop`. Looks at :attr:`Scheduler.active` every scheduler heartbeat,
    so that a takeover is announced within one."""

    def __init__(self, events: Events, scheduler: Scheduler, interval: float) -> None:
        self.events = events
        self.scheduler = scheduler
        self.interval = interval
        #: Whether the last event sent said ``active``.
        self.announced = False
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def start_for(cls, scheduler: Scheduler) -> SchedulerPresence | None:
        """The running presence of ``scheduler``; ``None`` while its app's events are off."""
        events = scheduler.app.events
        if events is None:
            return None
        presence = cls(events, scheduler, ANNOUNCE_INTERVAL)
        presence._task = asyncio.create_task(
            presence._loop(), name=f"taskq-scheduler-presence-{scheduler.id}"
        )
        return presence

    async def _send(self, kind: str) -> None:
        event = scheduler_event(self.events, kind, self.scheduler.id)
        self.announced = kind == "active"
        try:
            async with asyncio.timeout(EMIT_TIMEOUT):
                await self.events.channel.publish(event)
        except Exception as exc:  # best-effort, as every event
            log.debug("scheduler event dropped", scheduler=self.scheduler.id, error=repr(exc))

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_sent = 0.0
        while not cancel_requested():  # not `while True`: see cancel_requested
            active = self.scheduler.active
            if active and (not self.announced or loop.time() - last_sent >= self.interval):
                await self._send("active")
                last_sent = loop.time()
            elif not active and self.announced:
                await self._send("passive")
            await asyncio.sleep(min(self.interval, self.scheduler.heartbeat))

    async def stop(self) -> None:
        """Stop announcing; say ``scheduler.passive`` if it was active, so a page need
        not wait :data:`ACTIVE_AFTER` for the next one to show up."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self.announced:
            await self._send("passive")
