"""What the dashboard knows now: queue counts polled from the broker, totals by state
from the store, workers from their heartbeats, the active scheduler from its events,
rates from the lifecycle events, and whether the broker and the store answer; pushed to
every open page as server-sent events.

One :class:`Live` per dashboard, started on the first request (a dashboard mounted in
someone's FastAPI app gets no lifespan of its own) and stopped with the app. Every
outage is caught here and shown, never raised: the page must keep working, and say
so, while the broker or the store is down.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskq.brokers.base import QueueInfo
from taskq.dashboard.series import RATE_OF, Health, Rates
from taskq.events import Events, Subscription, TaskEvent
from taskq.heartbeat import OFFLINE_AFTER, WORKER_STATE
from taskq.logs import get_logger
from taskq.loops import cancel_requested
from taskq.schedules.presence import ACTIVE_AFTER, SCHEDULER_STATE
from taskq.status import utcnow
from taskq.stores.listing_base import TaskFilter

if TYPE_CHECKING:
    from taskq.app import TaskQueue

log = get_logger(__name__)

#: Seconds between two polls of the queues.
POLL_INTERVAL = 2.0
#: Seconds between two counts of the store's records by state (a walk of its index).
COUNT_INTERVAL = 5.0
#: Seconds :meth:`Live.stop` gives each connection to close.
STOP_TIMEOUT = 2.0
#: Seconds between two tries of a guessed management API that has never answered.
GUESS_RETRY = 60.0
#: Recent task events kept for a page that opens.
FEED_SIZE = 50


class Live:
    """The dashboard's live state; see the module."""

    def __init__(
        self,
        app: TaskQueue,
        *,
        poll_interval: float | None = None,
        management_url: str | None = None,
    ) -> None:
        self.app = app
        self.poll_interval = POLL_INTERVAL if poll_interval is None else poll_interval
        self.broker = Health()
        self.store = Health()
        self.events_health = Health()
        #: Where unacked counts come from (RabbitMQ's management API): the URL given, or
        #: the broker's own guess (port 15672 of its node, its credentials), as
        #: ``taskq queues`` does. A guess that does not answer is no fault of anyone's:
        #: it is tried again now and then, quietly, and the page shows no error for it.
        self.management = app.broker.management_api(management_url)
        self.management_given = management_url is not None
        self.management_health = Health()
        self._management_retry_at = 0.0
        self.queues: list[dict[str, Any]] = []
        self.dead: dict[str, Any] | None = None
        self.counts: dict[str, int] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        #: Schedulers that said ``scheduler.active``, by id (:mod:`taskq.schedules.presence`).
        self.schedulers: dict[str, dict[str, Any]] = {}
        self.rates = Rates()
        self.feed: list[dict[str, Any]] = []
        self.polled_at: str | None = None
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._task: asyncio.Task[None] | None = None
        self._events: Events | None = None
        self._own_events = False
        self._subscription: Subscription | None = None
        self._counted = 0.0
        self._polling = asyncio.Lock()
        #: Whether the app was connected here (then closed here, at stop), as a worker
        #: does; an app its owner connected is left to its owner.
        self._owns_connection = False

    # -- life -------------------------------------------------------------------------

    def ensure_started(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="taskq-dashboard-live")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self._subscription is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._subscription.close()
            except Exception as exc:  # a connection already gone
                log.debug("event subscription closed with an error", error=repr(exc))
            self._subscription = None
        if self._own_events and self._events is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._events.close()
            except Exception as exc:
                log.debug("events closed with an error", error=repr(exc))
        if self._owns_connection:
            self._owns_connection = False
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self.app.close()
            except Exception as exc:
                log.debug("app closed with an error", error=repr(exc))

    async def _run(self) -> None:
        while not cancel_requested():  # not `while True`: see cancel_requested
            try:
                await self.poll()
            except Exception:  # never let the loop die: the page says what is wrong
                log.exception("dashboard poll failed")
            await asyncio.sleep(self.poll_interval)

    # -- polling ----------------------------------------------------------------------

    async def poll(self) -> None:
        """One round: connect and subscribe if not yet, read the queues, count the
        records now and then; then push a snapshot to every page. One round at a time:
        a page's first request polls while the loop's first round may be under way, and
        two passive declares of a missing queue at once fail each other's channel."""
        async with self._polling:
            await self._poll()

    async def _poll(self) -> None:
        await self._connect()
        await self._poll_queues()
        if time.monotonic() - self._counted >= COUNT_INTERVAL:
            await self._count()
        self.polled_at = utcnow().isoformat()
        self.publish("snapshot", self.snapshot())

    async def _connect(self) -> None:
        app = self.app
        try:
            await app.store.connect()
        except Exception as exc:
            self.store.down(exc)
        if not app.connected:
            try:
                await app.connect()
            except Exception as exc:
                self.broker.down(exc)
                return
            self._owns_connection = True
        if self._subscription is None:
            events = app.events
            if events is None:  # this app does not emit, but its workers may
                events = self._events or Events.for_broker(app.broker, app.topology.exchange)
                self._own_events = True
            self._events = events
            try:
                self._subscription = await events.subscribe("#", self.on_event)
                self.events_health.up()
            except Exception as exc:
                self.events_health.down(exc)

    async def _poll_queues(self) -> None:
        topology = self.app.topology
        names = [n for n in sorted(self.app.tasks) if not self.app.tasks[n].broadcast]
        known = await self._managed_queues()
        if known is not None:  # ready, unacked and consumers, one GET for every queue
            queues = [(topology.queue_name(n), n) for n in names]
            self.queues = [_queue_row(queue, n, known.get(queue)) for queue, n in queues]
            self.dead = _queue_row(topology.dead_queue, None, known.get(topology.dead_queue))
            return
        broker = self.app.broker
        try:
            rows = []
            for name in names:  # broadcast tasks have no queue of their own: one per worker
                info = await broker.queue_info(name)
                rows.append(_queue_row(topology.queue_name(name), name, info))
            dead = await broker.dead_queue_info()
        except Exception as exc:
            self.broker.down(exc)
            return
        self.broker.up()
        self.queues = rows
        self.dead = _queue_row(topology.dead_queue, None, dead)

    async def _managed_queues(self) -> dict[str, QueueInfo] | None:
        """Every queue's figures from the management API; ``None`` when there is none
        or it did not answer (then passive declares tell ready and consumers)."""
        if self.management is None or time.monotonic() < self._management_retry_at:
            return None
        try:
            # A blocking GET (urllib), in a thread: the loop keeps serving pages.
            known = await asyncio.to_thread(self.management.queues)
        except Exception as exc:
            if not self.management_given and self.management_health.ok is None:
                # A guess that never answered: most brokers without the plugin.
                log.debug("no management API beside the broker", error=str(exc))
                self._management_retry_at = time.monotonic() + GUESS_RETRY
                return None
            if self.management_health.ok is not False:
                log.warning("management API unreachable; unacked unknown", error=str(exc))
            self.management_health.down(exc)
            return None
        self.management_health.up()
        return known

    async def _count(self) -> None:
        try:
            counts = await self.app.store.count_tasks(TaskFilter())
        except Exception as exc:
            self.store.down(exc)
            return
        self.store.up()
        self._counted = time.monotonic()
        self.counts = {state.value: n for state, n in counts.items()}

    # -- events -----------------------------------------------------------------------

    def on_event(self, event: TaskEvent) -> None:
        if event.exchange != self.app.topology.exchange:
            return  # another app on this vhost
        if event.state == WORKER_STATE:
            self._on_worker(event)
            return
        if event.state == SCHEDULER_STATE:
            self._on_scheduler(event)
            return
        series = RATE_OF.get(event.state)
        if series is not None:
            self.rates.add(event.task, series, time.time())
        item = {
            "task_id": event.task_id,
            "task": event.task,
            "state": event.state,
            "attempt": event.attempt,
            "time": event.time,
            "error": event.error_type,
            "host": event.host,
        }
        self.feed = [item, *self.feed[: FEED_SIZE - 1]]
        self.publish("task", item)

    def _on_worker(self, event: TaskEvent) -> None:
        if event.task == "offline":
            self.workers.pop(event.task_id, None)
        else:
            self.workers[event.task_id] = {
                "id": event.task_id,
                "host": event.host,
                "pid": event.pid,
                "running": event.running,
                "concurrency": event.concurrency,
                "last_seen": event.time,
                "seen": time.time(),
            }
        self.publish("workers", self.live_workers())

    def _on_scheduler(self, event: TaskEvent) -> None:
        if event.task == "active":
            self.schedulers[event.task_id] = {
                "id": event.task_id,
                "host": event.host,
                "pid": event.pid,
                "last_seen": event.time,
                "seen": time.time(),
            }
        else:  # passive: it stopped, or another took over
            self.schedulers.pop(event.task_id, None)

    def active_scheduler(self) -> dict[str, Any] | None:
        """The scheduler that last said it is active, within :data:`ACTIVE_AFTER`
        seconds; ``None`` if none did (none runs, or its app's events are off). Two
        may overlap for a moment during a failover: the latest heard wins."""
        now = time.time()
        for gone in [s for s, v in self.schedulers.items() if now - v["seen"] > ACTIVE_AFTER]:
            del self.schedulers[gone]
        if not self.schedulers:
            return None
        latest = max(self.schedulers.values(), key=lambda s: s["seen"])
        return {k: v for k, v in latest.items() if k != "seen"}

    def live_workers(self) -> list[dict[str, Any]]:
        """Workers heard from within :data:`OFFLINE_AFTER` seconds (others forgotten)."""
        now = time.time()
        for worker_id in [w for w, v in self.workers.items() if now - v["seen"] > OFFLINE_AFTER]:
            del self.workers[worker_id]
        return [
            {k: v for k, v in worker.items() if k != "seen"}
            for worker in sorted(self.workers.values(), key=lambda w: w["id"])
        ]

    # -- pages ------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        return {
            "broker": vars(self.broker),
            "store": vars(self.store),
            "events": vars(self.events_health),
            **({"management": vars(self.management_health)} if self._shows_management() else {}),
        }

    def _shows_management(self) -> bool:
        """The API given, or the guess once it answered: a guess never answered is not
        a fault to show."""
        given = self.management_given and self.management is not None
        return given or self.management_health.ok is not None

    def snapshot(self) -> dict[str, Any]:
        return {
            "time": self.polled_at,
            "health": self.health(),
            "queues": self.queues,
            "dead": self.dead,
            "counts": self.counts,
            "workers": self.live_workers(),
            "rates": {
                "*": self.rates.series(),
                **{row["task"]: self.rates.series(row["task"]) for row in self.queues},
            },
        }

    def publish(self, kind: str, data: Any) -> None:
        """Queue one server-sent event for every open page; a page too slow to take
        them loses the oldest (the next snapshot repairs it)."""
        text = f"event: {kind}\ndata: {json.dumps(data, default=_default)}\n\n"
        for queue in self._subscribers:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(text)

    def subscribe(self) -> asyncio.Queue[str]:
        queue: asyncio.Queue[str] = asyncio.Queue(maxsize=200)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[str]) -> None:
        self._subscribers.discard(queue)


def _queue_row(queue: str, task: str | None, info: Any) -> dict[str, Any]:
    if info is None:
        return {"queue": queue, "task": task, "exists": False}
    return {
        "queue": queue,
        "task": task,
        "exists": True,
        "ready": info.ready,
        "unacked": info.unacked,
        "consumers": info.consumers,
    }


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")
