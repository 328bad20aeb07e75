"""Cancelling tasks, persistently: ``await app.cancel(task_id)``, ``handle.cancel()``,
``taskq cancel ID...``.

The status store is the truth (Celery keeps revokes in worker memory, lost with it):

- A task that waits (``queued`` in its queue, ``queued`` in a delay level for a
  countdown, ``retrying`` between attempts) is moved to ``cancelled`` in the store, in
  one atomic step, and nothing else: when its message reaches a worker, the worker's
  ``started`` write, which it makes for every task anyway, is refused, and the message
  is acked without running. No broker operation, so it holds across worker and broker
  restarts, and the hot path pays nothing.
- A running task is marked ``cancel_requested`` in the store, then every worker is told
  through the control exchange (:meth:`Broker.publish_control`, a fanout). The worker
  running it cancels the coroutine of an **async** task, records ``cancelled`` and acks
  the message. A **sync** task cannot be stopped (Python cannot stop a thread): its
  worker clears the mark (:meth:`StatusStore.refuse_cancel`) and the task keeps its real
  outcome. A redelivery of a marked task (its worker died) becomes ``cancelled``
  instead of a new attempt.

:func:`cancel` waits for the worker's answer, read in the store.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING

from taskq.broadcast import interrupt_workers
from taskq.errors import BrokerError, UnknownTask
from taskq.logs import get_logger
from taskq.status import TaskState, TaskStatus

if TYPE_CHECKING:
    from taskq.app import TaskQueue

log = get_logger(__name__)

#: Seconds :func:`cancel` waits for the worker running a task to answer.
ANSWER_TIMEOUT = 5.0
#: Seconds between two sends of the control message while no answer came: a worker
#: reconnecting (its control queue declared again) gets a later one.
RESEND = 0.5
#: Seconds a worker remembers a cancel it was sent, for the task whose message it holds
#: but has not started yet (the cancel came between its ``started`` write and its call).
REMEMBER = 60.0


def encode_cancel(task_id: str) -> bytes:
    return json.dumps({"type": "cancel", "task_id": task_id}).encode()


def decode_control(body: bytes) -> str | None:
    """The task id of a cancel message; ``None`` for anything else (ignored: a newer
    sender's control message, or garbage, must not disturb a worker)."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if isinstance(data, dict) and data.get("type") == "cancel":
        task_id = data.get("task_id")
        if isinstance(task_id, str) and task_id:
            return task_id
    return None


async def cancel(app: TaskQueue, task_id: str) -> bool:
    """See :meth:`TaskQueue.cancel`."""
    await app.store.connect()
    status = await app.store.cancel(task_id)
    if status is None:
        raise UnknownTask.for_id(task_id)
    bound = log.bind(task_id=task_id, task=status.name)
    if status.state is TaskState.CANCELLED:
        await _emit(app, status)
        bound.info("task cancelled")
        await interrupt_workers(app, status)  # a broadcast call may run on some
        return True
    if status.state is not TaskState.STARTED:
        bound.info("task already finished; not cancelled", state=status.state.value)
        return False
    await app.connect()
    answer = await _ask_workers(app, task_id, ANSWER_TIMEOUT)
    if answer is None:
        bound.warning(
            "no worker answered the cancel of a running task; it will not be started again",
            waited=ANSWER_TIMEOUT,
        )
        return True
    bound.info("cancel of a running task answered", state=answer.state.value)
    return answer.state is TaskState.CANCELLED


async def _ask_workers(app: TaskQueue, task_id: str, timeout: float) -> TaskStatus | None:
    """Send the cancel to every worker, again every :data:`RESEND` seconds, until the
    record says the worker answered (finished, or the mark cleared); ``None`` if none
    did within ``timeout`` of the first confirmed send. The first send's error is
    raised (the store's mark stays: no new attempt starts); a later one's is logged."""
    body = encode_cancel(task_id)
    await app.broker.publish_control(body)
    now = time.monotonic()
    deadline, resend = now + timeout, now + RESEND
    interval = 0.005
    while True:
        status = await app.store.get(task_id)
        if status is None or status.finished or not status.cancel_requested:
            return status
        now = time.monotonic()
        if now >= deadline:
            return None
        if now >= resend:
            resend = now + RESEND
            try:
                await app.broker.publish_control(body)
            except BrokerError as exc:
                log.debug("cancel not sent again", task_id=task_id, error=str(exc))
        await asyncio.sleep(min(interval, deadline - now, max(0.0, resend - now)))
        interval = min(interval * 1.5, 0.1)


async def _emit(app: TaskQueue, status: TaskStatus) -> None:
    if app.events is not None:
        await app.events.emit("cancelled", status.id, status.name, attempt=status.attempts or None)


class _Running:
    """One call running on a runner task; ``below``: an earlier call of the same task
    id still running here (a redelivery after a reconnect runs beside the first)."""

    __slots__ = ("below", "interrupted", "is_async", "task")

    def __init__(self, task: asyncio.Task[object], is_async: bool, below: _Running | None):
        self.task = task
        self.is_async = is_async
        self.below = below
        self.interrupted = False

    def calls(self) -> list[_Running]:
        found: list[_Running] = []
        running: _Running | None = self
        while running is not None:
            found.append(running)
            running = running.below
        return found


class WorkerCancels:
    """A worker's side: which task ids its runners are calling now, and the cancels it
    was sent lately. Plain dicts, touched by the event loop only: registering a call
    costs two dict operations."""

    def __init__(self) -> None:
        #: Task id -> its latest call running here (the others chained below it).
        self._running: dict[str, _Running] = {}
        #: Task id -> when its cancel arrived (monotonic); pruned as it grows.
        self._asked: dict[str, float] = {}

    def __len__(self) -> int:
        """Task ids being called now: the heartbeat's ``running``."""
        return len(self._running)

    def enter(self, task_id: str, is_async: bool) -> _Running | None:
        """Register the call of ``task_id`` about to run on this task; ``None`` when a
        cancel for it arrived before (between its ``started`` write and now): it must
        not run."""
        if self._asked and self._asked.pop(task_id, None) is not None:
            return None
        current = asyncio.current_task()
        assert current is not None
        running = self._running[task_id] = _Running(current, is_async, self._running.get(task_id))
        return running

    def leave(self, task_id: str, running: _Running) -> None:
        top = self._running.get(task_id)
        if top is running:
            if running.below is None:
                del self._running[task_id]
            else:
                self._running[task_id] = running.below
            return
        while top is not None:  # a call that ended under a later one: unlink it
            if top.below is running:
                top.below = running.below
                return
            top = top.below

    def request(self, task_id: str) -> bool | None:
        """A cancel arrived: interrupt the async call of ``task_id`` if one runs here
        (``True``), say a sync one runs here (``False``), or ``None``."""
        top = self._running.get(task_id)
        if top is None:
            now = time.monotonic()
            if len(self._asked) > 1000:
                self._asked = {k: t for k, t in self._asked.items() if now - t < REMEMBER}
            self._asked[task_id] = now
            return None
        calls = top.calls()
        if not all(running.is_async for running in calls):
            return False
        for running in calls:
            if not running.interrupted:  # a second cancel would hit its cancelled write
                running.interrupted = True
                running.task.cancel()
        return True
