"""Broadcast tasks: ``@app.task(broadcast=True)`` runs each call once on every worker
process that serves the task and is running when the call is sent (cache
invalidation, a config reload, "drop your local state").

    @app.task(broadcast=True)
    async def reload_config() -> str: ...

    handle = await reload_config.delay()                 # a BroadcastHandle
    outcomes = await handle.results(timeout=5, expected=3)   # {worker id: TaskStatus}

How it travels (:meth:`~taskq.brokers.base.Broker.publish_broadcast`): the task's name
on the app's topic exchange, through an exchange-to-exchange binding, to the fanout
``<exchange>.broadcast.<task>``, and from there into one exclusive, auto-delete queue
per worker process. A worker that is not running when a call is published never gets
it; a call that reaches no worker at all raises :class:`~taskq.errors.PublishError`
unless sent with ``required=False``.

Records (:mod:`taskq.stores.broadcast_base`): one task id per call. Its own record is
written ``queued`` by the sender (the call was sent), and it is what a cancel moves to
``cancelled``; each worker writes its outcome, attempts and error under the same id,
keyed by its worker id (:mod:`taskq.workerid`). Retries and time limits apply per
worker: a failed attempt is tried again *in the same worker* after its backoff
(:mod:`taskq.broadcast_run`).

Refused with :class:`~taskq.errors.ConfigurationError` before anything is sent, since a
call goes only to the workers alive at that moment and has no queue to wait in:
``countdown`` / ``eta``, ``priority``, ``send_many``, a broadcast task as a workflow
step; and at decoration, ``max_priority``, ``prefetch`` and ``rate_limit``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from taskq.errors import ConfigurationError, TaskqError
from taskq.handle import TaskHandle
from taskq.logs import get_logger
from taskq.sending import create, encode_call
from taskq.status import TaskStatus

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.task import Task

log = get_logger(__name__)

#: Seconds :meth:`BroadcastHandle.results` waits by default.
RESULTS_TIMEOUT = 5.0


def check_broadcast_options(task: Task[Any, Any]) -> None:
    """At decoration: options that need a queue of the task's own, which a broadcast
    task does not have."""
    for option, value in (
        ("max_priority", task.max_priority),
        ("prefetch", task.prefetch),
        ("rate_limit", task.rate_limit),
    ):
        if value is not None:
            raise ConfigurationError(
                f"task {task.name!r}: broadcast=True takes no {option} (a broadcast call "
                "goes straight to every live worker's own queue); drop one of the two"
            )


def refuse(name: str, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"task {name!r} is a broadcast task: {what} is not possible, since a call goes "
        "only to the workers running when it is sent; send each call with delay()/send()"
    )


def check_not_broadcast(app: TaskQueue, name: str, what: str) -> None:
    """For ``send_many`` and workflow steps: a broadcast task registered here is refused."""
    task = app.tasks.get(name)
    if task is not None and task.broadcast:
        raise refuse(name, what)


class BroadcastHandle(TaskHandle):
    """What ``delay()`` / ``send()`` of a broadcast task return: the call's id, whether
    it reached any worker, and each worker's outcome. :meth:`status` is the call's own
    record (``queued``: sent; ``cancelled``); :meth:`cancel` works as for any task."""

    __slots__ = ("reached",)

    def __init__(
        self, app: TaskQueue, task_id: str, name: str | None = None, *, reached: bool
    ) -> None:
        super().__init__(app, task_id, name)
        #: The call reached at least one worker's queue. ``False`` with
        #: ``required=False`` and no worker listening, and for an explicit task id the
        #: store already knew (nothing was sent again).
        self.reached = reached

    def __repr__(self) -> str:
        return f"<BroadcastHandle {self.name or '?'} {self.id} reached={self.reached}>"

    async def results(
        self, timeout: float = RESULTS_TIMEOUT, *, expected: int | None = None
    ) -> dict[str, TaskStatus]:
        """Each worker's record of this call, by worker id, as written within
        ``timeout`` seconds (a worker still running it shows ``started``). There is no
        telling how many workers got it, so this waits the whole ``timeout``, unless
        ``expected`` workers have reached a final state before."""
        store = self._app.store
        await store.connect()
        deadline = time.monotonic() + timeout
        interval = 0.01
        while True:
            found = await store.worker_statuses(self.id)
            if expected is not None and sum(s.finished for s in found.values()) >= expected:
                return found
            left = deadline - time.monotonic()
            if left <= 0:
                return found
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 1.5, 0.25)

    async def result(self, timeout: float | None = None) -> Any:
        """A broadcast call has an outcome per worker, not one: use :meth:`results`."""
        raise ConfigurationError(
            f"broadcast {self.id} of task {self.name!r} has one outcome per worker: "
            "use await handle.results(timeout=...)"
        )


async def send_broadcast(
    app: TaskQueue,
    task: Task[Any, Any],
    args: Sequence[Any],
    kwargs: Mapping[str, Any],
    *,
    task_id: str | None,
    countdown: float | None,
    eta: datetime | None,
    priority: int | None,
    required: bool,
) -> BroadcastHandle:
    """See :meth:`~taskq.task.Task.send`: the call's record, then one publish."""
    if countdown is not None or eta is not None:
        raise refuse(task.name, "a countdown or eta")
    if priority is not None:
        raise refuse(task.name, "a priority")
    task.validate(args, kwargs)
    call = encode_call(task.name, args, kwargs, task_id, app.max_message_size)
    await app.connect()
    bound = log.bind(task_id=call.task_id, task=task.name)
    # The record first: an explicit id is an idempotency key, and a worker's start
    # must find the call's record to see a cancel of it.
    if not await create(app, call.task_id, task.name, call.call):
        bound.debug("broadcast already sent, not sent again")
        return BroadcastHandle(app, call.task_id, task.name, reached=False)
    if app.events is not None:
        await app.events.emit("queued", call.task_id, task.name)
    try:
        reached = await app.broker.publish_broadcast(
            task.name, call.body, task_id=call.task_id, required=required
        )
    except BaseException as exc:
        # Not confirmed: the record goes, so a re-send of the id publishes again.
        try:
            await asyncio.shield(app.store.discard(call.task_id))
        except TaskqError as gone:
            bound.warning("could not remove the queued record", error=str(gone))
        if isinstance(exc, TaskqError):
            bound.warning("broadcast not sent", error=str(exc))
        raise
    bound.debug("broadcast sent", reached=reached)
    return BroadcastHandle(app, call.task_id, task.name, reached=reached)


async def interrupt_workers(app: TaskQueue, status: TaskStatus) -> None:
    """After a cancel moved a call's record to ``cancelled``: a broadcast call may be
    running on some workers, so they are told, as for a running task (best effort: a
    worker that has not started it yet is stopped by the record already). Nothing for
    a task registered here as an ordinary one; for an unregistered name, the store
    says whether workers ran it."""
    task = app.tasks.get(status.name)
    if task is not None and not task.broadcast:
        return
    if task is None and not await app.store.worker_statuses(status.id):
        return
    from taskq.cancel import encode_cancel

    try:
        await app.connect()
        await app.broker.publish_control(encode_cancel(status.id))
    except TaskqError as exc:
        log.warning("running workers not told of the cancel", task_id=status.id, error=str(exc))


def describe_workers(workers: Mapping[str, TaskStatus]) -> list[str]:
    """``taskq status ID`` of a broadcast call: one line per worker."""
    lines = []
    for worker, status in sorted(workers.items()):
        when = status.finished_at or status.started_at or status.created_at
        line = (
            f"worker {worker}  {status.state.value}  attempts={status.attempts}  "
            f"{'-' if when is None else when.isoformat()}"
        )
        if status.error is not None:
            line += f"  {status.error.type}: {' '.join(status.error.message.split())}"
        elif status.result is not None:
            line += f"  result={status.result!r:.60}"
        lines.append(line)
    return lines
