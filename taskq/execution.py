"""Running one delivery: from message bytes to a recorded outcome.

Steps, each of which can end the run with an :class:`~taskq.settle.Outcome`:

1. decode the body; a malformed one is dead-lettered (recorded ``failed`` if an id can
   be read);
2. check the task is known here and matches the queue it came from;
3. record ``started`` (attempts + 1). The store refuses that move for a finished task:
   a redelivered ``succeeded`` task is acked without running again;
4. validate the arguments against the signature (bad ones fail at once, no retry);
5. run it: async tasks on the event loop, sync ones in the thread pool;
6. record ``succeeded`` or ``failed``; only then is the message settled.

If the status store cannot be written, nothing is acked: the message is requeued after
a pause, because "ack only after the outcome is recorded" is the promise.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import structlog

from taskq.errors import (
    InvalidArguments,
    MalformedMessage,
    StoreError,
)
from taskq.message import TaskMessage, to_jsonable
from taskq.settle import Outcome
from taskq.status import ErrorInfo, TaskState

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.brokers.base import Delivery
    from taskq.task import Task

#: Pause before requeueing a message whose outcome could not be recorded, so an
#: unreachable store does not turn into a hot redelivery loop.
STORE_RETRY_PAUSE = 1.0

_log = structlog.get_logger("taskq.worker")


class TaskRunner:
    """Turns deliveries into outcomes for one worker."""

    def __init__(self, app: TaskQueue, threads: ThreadPoolExecutor, *, worker_id: str) -> None:
        self.app = app
        self.store = app.store
        self.threads = threads
        self.log = _log.bind(worker=worker_id)

    async def run(self, delivery: Delivery) -> tuple[Outcome, Any]:
        """The outcome for ``delivery`` and the logger bound to its task. Never raises
        but ``CancelledError`` (worker shutdown: the message stays unsettled and goes
        back to its queue when the consumer closes)."""
        log = self.log.bind(queue=delivery.queue)
        try:
            return await self._run(delivery, log)
        except StoreError as exc:
            log.error("status store unavailable; requeueing", error=str(exc))
            await asyncio.sleep(STORE_RETRY_PAUSE)
            return Outcome.requeue("status store unavailable"), log
        except Exception as exc:
            # A bug of ours (or a driver's) met by this message. Requeueing would meet
            # it again forever; dead-lettering keeps the message, with the reason, for
            # someone to look at, and the worker keeps all of its slots.
            log.exception("unexpected error handling a message; dead-lettering it")
            return Outcome.dead_letter(f"internal error: {type(exc).__name__}: {exc}"), log

    async def _run(self, delivery: Delivery, log: Any) -> tuple[Outcome, Any]:
        try:
            message = TaskMessage.decode(delivery.body, correlation_id=delivery.correlation_id)
        except MalformedMessage as exc:
            log = log.bind(task_id=exc.task_id, task=exc.task or delivery.task)
            return await self._reject(exc.task_id, exc.task or delivery.task, exc, log), log
        log = log.bind(task_id=message.id, task=message.task)

        task = self.app.tasks.get(message.task)
        if task is None or message.task != delivery.task:
            reason = (
                f"task {message.task!r} is not registered on this worker"
                if task is None
                else f"task {message.task!r} arrived on the queue of task {delivery.task!r}"
            )
            unknown = MalformedMessage(reason, task_id=message.id, task=message.task)
            return await self._reject(message.id, message.task, unknown, log), log

        status = await self.store.transition(message.id, task.name, TaskState.STARTED)
        if status is None:
            return await self._already_finished(message, log), log
        log = log.bind(attempt=status.attempts)

        try:
            args, kwargs = task.validate(message.args, message.kwargs)
        except InvalidArguments as exc:
            return await self._reject(message.id, task.name, exc, log), log

        log.debug("task started")
        started = time.perf_counter()
        try:
            value = await self._call(task, args, kwargs)
            result = to_jsonable(value, what=f"result of task {task.name!r}")
        except Exception as exc:
            duration = time.perf_counter() - started
            error = ErrorInfo.from_exception(exc, traceback.format_exc())
            await self.store.transition(message.id, task.name, TaskState.FAILED, error=error)
            log.error("task failed", duration=round(duration, 6), exc_info=exc)
            return Outcome.dead_letter(f"task raised {error.type}: {error.message}"), log

        duration = time.perf_counter() - started
        recorded = await self.store.transition(
            message.id, task.name, TaskState.SUCCEEDED, result=result
        )
        if recorded is None:
            log.warning("task ran again after it had finished; first outcome kept")
        else:
            log.info("task succeeded", duration=round(duration, 6))
        return Outcome.ack(), log

    async def _call(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        if task.is_async:
            return await task.fn(*args, **kwargs)
        # Sync tasks run in the pool, with the caller's context (structlog contextvars).
        context = contextvars.copy_context()
        call = functools.partial(context.run, task.fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self.threads, call)

    async def _reject(
        self,
        task_id: str | None,
        name: str,
        exc: MalformedMessage | InvalidArguments,
        log: Any,
    ) -> Outcome:
        """A message that cannot run: record ``failed`` where an id is known, then
        dead-letter it with the reason. Never retried: it would fail the same way."""
        reason = exc.reason if isinstance(exc, MalformedMessage) else str(exc)
        if task_id is not None:
            error = ErrorInfo(type=type(exc).__name__, message=reason)
            await self.store.transition(task_id, name, TaskState.FAILED, error=error)
        return Outcome.dead_letter(reason)

    async def _already_finished(self, message: TaskMessage, log: Any) -> Outcome:
        current = await self.store.get(message.id)
        if current is not None and current.state is TaskState.SUCCEEDED:
            log.info("task already succeeded; acking the redelivery without running it")
            return Outcome.ack()
        # Failed earlier: its dead letter may not have been published before the crash
        # that brought this message back, so dead-letter it (again, at worst).
        error = current.error if current is not None else None
        what = f"{error.type}: {error.message}" if error else "no error recorded"
        log.warning("task already failed; dead-lettering the redelivery", error=what)
        return Outcome.dead_letter(f"task already failed: {what}")
