"""Running a broadcast call on one worker (:mod:`taskq.broadcast`): the worker's own
record under the call's id, its own retries and time limit.

It follows :class:`~taskq.execution.TaskRunner`'s steps with the worker's record
(:meth:`~taskq.stores.base.StatusStore.worker_transition`) in place of the task's, and
two differences that come from the worker's queue being exclusive to it:

- **Retries run here.** A delayed copy through the broker's delay levels would come
  back to the topic exchange and reach *every* worker again. So a failed attempt is
  recorded ``retrying`` and tried again by this worker after its backoff, the message
  held unacked meanwhile. That loses nothing the broker would keep: the worker's queue
  and the messages in it go when the worker goes. A retry that could not end before
  the broker's ``consumer_timeout`` (counted from the first attempt) fails instead.
- **Nothing is dead-lettered.** A failure is recorded in the worker's record and
  logged, and the message is acked: a dead letter requeued later would go to one
  queue, not to every worker, and each worker would dead-letter its own copy.

The cancel check costs nothing extra: the worker's ``started`` write reads the call's
record in the same atomic step and records ``cancelled`` instead when it was cancelled.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from typing import TYPE_CHECKING, Any

from taskq.errors import InvalidArguments, SerializationError, TaskCancelled
from taskq.message import TaskMessage, to_jsonable
from taskq.settle import Outcome
from taskq.status import ErrorInfo, TaskState, TaskStatus

if TYPE_CHECKING:
    from taskq.brokers.base import Delivery
    from taskq.execution import TaskRunner
    from taskq.task import Task

#: A retry must be able to end within this share of the broker's ``consumer_timeout``,
#: counted from the first attempt, as a delivery must before it starts (the worker's
#: ``ACK_DEADLINE_SHARE``): its message is held unacked all along.
RETRY_DEADLINE_SHARE = 0.9


class BroadcastRunner:
    """Broadcast calls for the :class:`~taskq.execution.TaskRunner` of one worker."""

    def __init__(self, runner: TaskRunner, worker_id: str) -> None:
        self.runner = runner
        self.worker_id = worker_id

    async def run(
        self, delivery: Delivery, message: TaskMessage, task: Task[Any, Any], log: Any
    ) -> Outcome:
        """Attempts until one succeeds, fails for good or is cancelled; always an ack
        (a store that cannot be written raises :class:`~taskq.errors.StoreError`, and
        the runner requeues the message: it comes back to this worker)."""
        log = log.bind(broadcast=True)
        began = time.monotonic()
        while True:
            status = await self._record(message, task, TaskState.STARTED)
            if status is None:
                log.info("broadcast already finished on this worker; acked without running")
                return Outcome.ack()
            log = log.bind(attempt=status.attempts)
            if status.state is TaskState.CANCELLED:
                log.info("broadcast cancelled; acked without running")
                await self._emit("cancelled", message, task, status)
                return Outcome.ack()
            await self._emit("started", message, task, status)
            delay = await self._attempt(message, task, status, log)
            if delay is None:
                return Outcome.ack()
            if not self._fits(began, delay, task):
                log.error("broadcast retry could not end before the consumer timeout")
                return Outcome.ack()
            await asyncio.sleep(delay)

    async def _attempt(
        self, message: TaskMessage, task: Task[Any, Any], status: TaskStatus, log: Any
    ) -> float | None:
        """One attempt, recorded; the seconds to wait before the next, or ``None``."""
        if status.attempts > task.retry.max_attempts:
            error = ErrorInfo(type="WorkerLost", message="more starts than attempts allowed")
            await self._fail(message, task, error, log)
            return None
        try:
            args, kwargs = task.validate(message.args, message.kwargs)
        except InvalidArguments as exc:
            await self._fail(message, task, ErrorInfo.from_exception(exc), log)
            return None
        started = time.perf_counter()
        try:
            # TaskRunner's call: the time limit, and the interrupt of a cancel.
            value = await self.runner._call(task, message.id, args, kwargs)
            result = to_jsonable(value, what=f"result of task {task.name!r}")
        except TaskCancelled:
            recorded = await self._record(message, task, TaskState.CANCELLED)
            log.info("broadcast cancelled while running")
            await self._emit("cancelled", message, task, recorded)
            return None
        except SerializationError as exc:  # the same value every time: no retry
            await self._fail(message, task, ErrorInfo.from_exception(exc), log)
            return None
        except Exception as exc:
            error = ErrorInfo.from_exception(exc, traceback.format_exc())
            delay = task.retry.decide(exc, status.attempts)
            if delay is None:
                log.error("broadcast failed on this worker", exc_info=exc)
                await self._fail(message, task, error, log)
                return None
            recorded = await self._record(message, task, TaskState.RETRYING, error=error)
            if recorded is None or recorded.state is TaskState.CANCELLED:
                log.info("broadcast failed after it was cancelled; not retried")
                return None
            await self._emit("retrying", message, task, recorded, error)
            log.warning("broadcast failed; retrying here", retry_in=round(delay, 3))
            return delay
        recorded = await self._record(message, task, TaskState.SUCCEEDED, result=result)
        log.info("broadcast succeeded", duration=round(time.perf_counter() - started, 6))
        await self._emit("succeeded", message, task, recorded)
        return None

    def _fits(self, began: float, delay: float, task: Task[Any, Any]) -> bool:
        ends = time.monotonic() - began + delay + task.time_limit
        return ends <= self.runner.app.consumer_timeout * RETRY_DEADLINE_SHARE

    async def _fail(
        self, message: TaskMessage, task: Task[Any, Any], error: ErrorInfo, log: Any
    ) -> None:
        recorded = await self._record(message, task, TaskState.FAILED, error=error)
        log.warning("broadcast failed for good on this worker", error=error.message)
        await self._emit("failed", message, task, recorded, error)

    async def _record(
        self,
        message: TaskMessage,
        task: Task[Any, Any],
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        recorded = await self.runner.store.worker_transition(
            message.id, self.worker_id, task.name, state, result=result, error=error
        )
        observer = self.runner.observer  # metrics and traces, as for any task
        if observer is not None:
            observer.recorded(state, recorded, error)
        return recorded

    async def _emit(
        self,
        state: str,
        message: TaskMessage,
        task: Task[Any, Any],
        status: TaskStatus | None,
        error: ErrorInfo | None = None,
    ) -> None:
        events = self.runner.events
        if events is not None and status is not None:
            attempt = status.attempts or None
            await events.emit(state, message.id, task.name, attempt=attempt, error=error)
