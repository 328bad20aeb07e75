"""The scheduler: sends an app's schedules' ticks as ordinary tasks, while active.

    scheduler = Scheduler(app)
    await scheduler.run()        # until SIGTERM / SIGINT or request_stop()

What happens to a tick (``taskq scheduler APP_PATH`` runs this):

1. Only the active scheduler sends (:mod:`taskq.schedules.leader`); the others wait.
2. Due at its time, a tick is sent with ``app.send(task, args, kwargs,
   task_id="<schedule name>@<tick, ISO-8601 UTC>")``. An explicit task id is claimed in
   the status store before anything is published (:mod:`taskq.sending`), so a tick sent
   again, by this scheduler after an error or by another during a failover, publishes
   nothing: it runs once.
3. Then the tick is recorded as the schedule's last (moved forward only).

On becoming active, a scheduler reads each schedule's last tick from the store and
sends what was missed since: by default the latest missed tick once, older ones
skipped; ``catch_up=True``: each, at most ``max_catch_up`` (the latest). A schedule
seen for the first time (no last tick) starts with its next tick. A crash between a
send and its record is repaired by the next takeover: the latest tick goes again, and
its known id makes that a no-op.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from taskq.errors import TaskqError
from taskq.logs import get_logger
from taskq.schedules.leader import HEARTBEAT_INTERVAL, Leadership
from taskq.schedules.presence import SchedulerPresence
from taskq.schedules.schedule import Schedule, format_tick
from taskq.signals import stop_on_signals
from taskq.status import utcnow

if TYPE_CHECKING:
    from taskq.app import TaskQueue

log = get_logger(__name__)

#: Seconds past a tick's time the loop wakes for it, so that it is due by then.
_LATE = 0.001


class Scheduler:
    """Runs ``app.schedules``. Several may run (processes, machines): one is active.
    It connects the app and leaves closing it to its owner (the CLI closes it).

    ``heartbeat``: seconds between heartbeats; a failover takes about 2 to 3 of them
    after the broker notices the active one is gone. ``scheduler_id`` names this one in
    logs and heartbeats (default: a fresh one)."""

    def __init__(
        self,
        app: TaskQueue,
        *,
        heartbeat: float = HEARTBEAT_INTERVAL,
        scheduler_id: str | None = None,
    ) -> None:
        self.app = app
        self.heartbeat = heartbeat
        self.id = scheduler_id or uuid.uuid4().hex[:12]
        self.schedules: list[Schedule] = list(app.schedules)
        self.leadership: Leadership | None = None
        #: Per schedule: the last tick sent or skipped (``None`` until active).
        self._cursors: dict[str, datetime] = {}
        self._active = False
        self._stop: asyncio.Event | None = None
        self._loop_task: asyncio.Task[None] | None = None
        #: ``scheduler.active`` events while active, when the app's events are on.
        self._presence: SchedulerPresence | None = None

    @property
    def active(self) -> bool:
        return self._active

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self) -> None:
        """Start, run until :meth:`request_stop` or SIGTERM / SIGINT, stop."""
        self._stop = asyncio.Event()
        try:
            with stop_on_signals(self.request_stop):
                await self.start()
                await self._stop.wait()
        finally:
            await self.stop()

    async def start(self) -> None:
        """Check the schedules against the app, connect, join the line, start the loop."""
        self.app.schedules.check(self.app)
        if self._stop is None:
            self._stop = asyncio.Event()
        await self.app.connect()
        self.leadership = Leadership(self.app.broker, self.id, interval=self.heartbeat)
        await self.leadership.start()
        log.info(
            "scheduler started",
            scheduler=self.id,
            schedules=[s.name for s in self.schedules],
            exchange=self.app.topology.exchange,
        )
        self._loop_task = asyncio.create_task(self._loop(), name=f"taskq-scheduler-{self.id}")
        self._presence = SchedulerPresence.start_for(self)

    async def stop(self) -> None:
        """Stop sending and leave the line: another scheduler takes over at once."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        if self._presence is not None:
            await self._presence.stop()  # says scheduler.passive before the next takes over
            self._presence = None
        if self.leadership is not None:
            await self.leadership.stop()
        self._set_active(False)
        log.info("scheduler stopped", scheduler=self.id)

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    # -- the loop ---------------------------------------------------------------------

    async def _loop(self) -> None:
        assert self.leadership is not None and self._stop is not None
        while not self._stop.is_set():
            wait = self.heartbeat / 2
            try:
                active = self.leadership.active
                if active and not self._active:
                    await self._take_over()
                self._set_active(active)
                if active:
                    await self._send_due(utcnow())
                    wait = min(wait, self._until_next(utcnow()))
            except asyncio.CancelledError:
                raise
            except Exception:  # a store or broker outage: try again on the next turn
                log.exception("scheduler turn failed", scheduler=self.id)
            received = self.leadership.received
            received.clear()
            waiting = None if self._active else received.wait()  # wake on taking over
            try:
                if waiting is None:
                    await asyncio.sleep(wait)
                else:
                    await asyncio.wait_for(waiting, wait)
            except TimeoutError:
                pass

    def _set_active(self, active: bool) -> None:
        if active != self._active:
            self._active = active
            if active:
                log.info("active scheduler", scheduler=self.id)
            else:
                log.info("passive scheduler", scheduler=self.id)

    async def _take_over(self) -> None:
        """Read where each schedule stands: the last tick recorded, else now (a schedule
        seen for the first time starts with its next tick)."""
        now = utcnow()
        lasts = await asyncio.gather(*(self.app.store.last_tick(s.name) for s in self.schedules))
        self._cursors = {s.name: last or now for s, last in zip(self.schedules, lasts, strict=True)}

    def _until_next(self, now: datetime) -> float:
        nearest = min(
            (s.next_tick(self._cursors[s.name]) for s in self.schedules if s.name in self._cursors),
            default=now + timedelta(days=1),
        )
        return max(0.0, (nearest - now).total_seconds()) + _LATE

    async def _send_due(self, now: datetime) -> None:
        await asyncio.gather(*(self._send_schedule(s, now) for s in self.schedules))

    async def _send_schedule(self, schedule: Schedule, now: datetime) -> None:
        cursor = self._cursors.get(schedule.name)
        if cursor is None:
            return
        ticks, skipped = schedule.missed(cursor, now)
        if skipped:
            log.warning(
                "missed ticks skipped",
                scheduler=self.id,
                schedule=schedule.name,
                task=schedule.task,
                skipped=skipped,
                since=format_tick(cursor),
                catch_up=schedule.catch_up,
            )
            # Ticks are whole seconds, at least one apart: the next after this is ticks[0].
            self._cursors[schedule.name] = ticks[0] - timedelta(seconds=1)
        for tick in ticks:
            task_id = schedule.task_id(tick)
            bound = log.bind(
                scheduler=self.id, schedule=schedule.name, task=schedule.task, task_id=task_id
            )
            try:
                await self.app.send(schedule.task, schedule.args, schedule.kwargs, task_id=task_id)
            except TaskqError as exc:
                bound.error("tick not sent; trying again", error=str(exc))
                return  # the cursor stays before it: due again on the next turn
            late = (utcnow() - tick).total_seconds()
            bound.info("tick sent", tick=format_tick(tick), late=round(late, 3))
            self._cursors[schedule.name] = tick
            try:
                await self.app.store.record_tick(schedule.name, tick)
            except TaskqError as exc:  # the next takeover sends it again: a no-op
                bound.warning("tick sent but not recorded", error=str(exc))
