"""Running one delivery: from message bytes to a recorded outcome.

Steps, each of which can end the run with an :class:`~taskq.settle.Outcome`:

1. decode the body; a malformed one is dead-lettered (recorded ``failed`` if an id can
   be read);
2. check the task is known here and matches the queue it came from;
3. record ``started`` (attempts + 1). The store refuses that move for a finished task:
   a redelivered ``succeeded`` task is acked without running again. A start past the
   task's last allowed attempt means earlier ones died with their worker: a poison
   message, failed and dead-lettered instead of run again;
4. validate the arguments against the signature (bad ones fail at once, no retry);
5. run it within its time limit: async tasks on the event loop, sync ones in the
   thread pool;
6. record ``succeeded``, or on an error ask the task's retry policy: ``retrying`` and a
   delayed copy of the message published back to the broker, or ``failed``; only then
   is the message settled.

If the status store cannot be written, nothing is acked: the message is requeued after
a pause, because "ack only after the outcome is recorded" is the promise.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from taskq.broadcast_run import BroadcastRunner
from taskq.cancel import WorkerCancels
from taskq.errors import (
    BrokerError,
    InvalidArguments,
    MalformedMessage,
    SerializationError,
    StoreError,
    TaskCancelled,
    TaskTimeout,
)
from taskq.logs import get_logger
from taskq.message import TaskMessage, to_jsonable
from taskq.observe import ObservedWrites, combine
from taskq.retry import Reject
from taskq.settle import Outcome
from taskq.status import ErrorInfo, TaskState
from taskq.stores.batch import WriteBatcher
from taskq.tracing import trace_headers
from taskq.workflows.advance import WorkflowSteps

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.brokers.base import Delivery
    from taskq.metrics import WorkerMetrics
    from taskq.task import Task

#: Pause before requeueing a message whose outcome could not be recorded, so an
#: unreachable store does not turn into a hot redelivery loop.
STORE_RETRY_PAUSE = 1.0

_log = get_logger("taskq.worker")


#: The error recorded for a poison message (see :mod:`taskq.retry`).
WORKER_LOST = "WorkerLost"


class TaskRunner:
    """Turns deliveries into outcomes for one worker.

    ``on_overrun`` is called when a sync task runs past its limit: its thread cannot be
    stopped, so the worker replaces its thread pool (and, under ``Worker.run``, the
    process) instead of losing that slot for good.
    """

    def __init__(
        self,
        app: TaskQueue,
        threads: ThreadPoolExecutor,
        *,
        worker_id: str,
        on_overrun: Callable[[Task[Any, Any]], None] | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.app = app
        self.store = app.store
        #: Metrics and traces of the runs (:mod:`taskq.observe`); ``None`` when both are
        #: off, the default: then a message costs one test of it.
        self.observer = combine(app.tracing, metrics)
        #: Every state change goes through here: one store round trip for all the
        #: writes of tasks finishing together (:mod:`taskq.stores.batch`). Whole
        #: records only for an observer: the runner reads state and attempts.
        self.writes: WriteBatcher | ObservedWrites = WriteBatcher(
            app.store, records=self.observer is not None
        )
        if self.observer is not None:
            self.writes = ObservedWrites(self.writes, self.observer)
            self._observed = functools.partial(self.run, observed=True)
        if metrics is not None:
            metrics.watch(app)
        #: Lifecycle events, emitted where each state is recorded; ``None`` when off.
        self.events = app.events
        self.threads = threads
        self.on_overrun = on_overrun
        #: The calls running now, for the cancels of :mod:`taskq.cancel`.
        self.cancels = WorkerCancels()
        #: What follows a workflow step (:mod:`taskq.workflows.advance`).
        self.workflows = WorkflowSteps(app)
        #: Broadcast calls, recorded per worker (:mod:`taskq.broadcast_run`).
        self.broadcasts = BroadcastRunner(self, worker_id)
        # Every line of a task's life carries the pid: one log stream holds a pool's
        # processes, and a supervisor reports a dead child by its pid.
        self.log = _log.bind(worker=worker_id, pid=os.getpid())
        #: ``self.log`` bound to each queue, made once: a message binds only its own.
        self._queue_logs: dict[str, Any] = {}

    async def run(self, delivery: Delivery, *, observed: bool = False) -> tuple[Outcome, Any]:
        """The outcome for ``delivery`` and the logger bound to its task. Never raises
        but ``CancelledError`` (worker shutdown: the message stays unsettled and goes
        back to its queue when the consumer closes)."""
        if self.observer is not None and not observed:
            return await self.observer.run(delivery, self._observed)
        log = self._queue_logs.get(delivery.queue)
        if log is None:
            log = self._queue_logs[delivery.queue] = self.log.bind(queue=delivery.queue)
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
        if message.workflow is None:
            return await self._run_message(delivery, message, log)
        # A workflow step: its successors are published before it is settled.
        outcome, log = await self._run_message(delivery, message, log)
        return await self.workflows.after(message, outcome, log), log

    async def _run_message(
        self, delivery: Delivery, message: TaskMessage, log: Any
    ) -> tuple[Outcome, Any]:
        task = self.app.tasks.get(message.task)
        if task is None or message.task != delivery.task:
            reason = (
                f"task {message.task!r} is not registered on this worker"
                if task is None
                else f"task {message.task!r} arrived on the queue of task {delivery.task!r}"
            )
            unknown = MalformedMessage(reason, task_id=message.id, task=message.task)
            return await self._reject(message.id, message.task, unknown, log), log
        if task.broadcast:
            return await self.broadcasts.run(delivery, message, task, log), log

        status = await self.writes.transition(message.id, task.name, TaskState.STARTED)
        if status is None:
            return await self._already_finished(message, log), log
        log = log.bind(attempt=status.attempts)
        if status.state is TaskState.CANCELLED:  # a redelivery of a task asked to cancel
            log.info("task cancelled while its worker was lost; acked without running")
            await self._emit_cancelled(message.id, task.name, status.attempts)
            return Outcome.ack(), log
        if self.events is not None:
            await self.events.emit("started", message.id, task.name, attempt=status.attempts)
        if status.attempts > task.retry.max_attempts:
            return await self._poisoned(message, task, status.attempts, log), log

        try:
            args, kwargs = task.validate(message.args, message.kwargs)
        except InvalidArguments as exc:
            return await self._reject(message.id, task.name, exc, log), log

        log.debug("task started")
        started = time.perf_counter()
        try:
            value = await self._call(task, message.id, args, kwargs)
        except TaskCancelled:
            return await self._cancelled(message, task, status.attempts, log), log
        except Exception as exc:
            duration = round(time.perf_counter() - started, 6)
            error = ErrorInfo.from_exception(exc, traceback.format_exc())
            delay = task.retry.decide(exc, status.attempts)
            log = log.bind(duration=duration)  # on the retry and dead-letter lines too
            if delay is not None:
                return await self._retry(delivery, message, task, error, delay, log), log
            log.error("task failed", exc_info=exc)
            return await self._fail(message, task, error, status.attempts, exc), log
        try:
            result = to_jsonable(value, what=f"result of task {task.name!r}")
        except SerializationError as exc:  # the same value every time: no retry
            error = ErrorInfo.from_exception(exc)
            log.error("task result cannot be stored", error=str(exc))
            return await self._fail(message, task, error, status.attempts, exc), log

        duration = time.perf_counter() - started
        recorded = await self.writes.transition(
            message.id, task.name, TaskState.SUCCEEDED, result=result
        )
        if recorded is None:
            log.warning("task ran again after it had finished; first outcome kept")
        else:
            log.info("task succeeded", duration=round(duration, 6))
            if self.events is not None:
                await self.events.emit(
                    "succeeded", message.id, task.name, attempt=recorded.attempts
                )
        return Outcome.ack(), log

    async def _call(
        self, task: Task[Any, Any], task_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        running = self.cancels.enter(task_id, task.is_async)
        if running is None:
            raise TaskCancelled(task_id=task_id)
        try:
            return await self._call_within_limit(task, args, kwargs)
        except asyncio.CancelledError:
            if running.interrupted:  # by a cancel of this task, not by a worker shutdown
                running.task.uncancel()
                raise TaskCancelled(task_id=task_id) from None
            raise
        finally:
            self.cancels.leave(task_id, running)

    async def _call_within_limit(
        self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        limit = task.time_limit
        if task.is_async:
            timer = asyncio.timeout(limit)
            try:
                async with timer:
                    return await task.fn(*args, **kwargs)
            except TimeoutError:
                if timer.expired():  # ours, not a TimeoutError of the task's own
                    raise TaskTimeout(task.name, limit) from None
                raise
        # Sync tasks run in the pool, with the caller's context (structlog contextvars).
        context = contextvars.copy_context()
        call = functools.partial(context.run, task.fn, *args, **kwargs)
        future = asyncio.get_running_loop().run_in_executor(self.threads, call)
        done, _ = await asyncio.wait({future}, timeout=limit)
        if not done:
            # A thread cannot be stopped: leave it, take its outcome off our hands, and
            # let the worker replace what it occupies.
            future.add_done_callback(_forget)
            if self.on_overrun is not None:
                self.on_overrun(task)
            raise TaskTimeout(task.name, limit)
        return future.result()

    async def _retry(
        self,
        delivery: Delivery,
        message: TaskMessage,
        task: Task[Any, Any],
        error: ErrorInfo,
        delay: float,
        log: Any,
    ) -> Outcome:
        """Record ``retrying``, publish the same message again with ``delay`` (it waits
        in the broker's delay queues), then ack this one. A crash between the publish
        and the ack leaves two copies: the store lets only one of them succeed."""
        recorded = await self.writes.transition(
            message.id, task.name, TaskState.RETRYING, error=error
        )
        if recorded is None:  # finished meanwhile by a duplicate delivery
            return await self._already_finished(message, log)
        if recorded.state is TaskState.CANCELLED:  # asked to cancel during the attempt
            log.info("task failed after a cancel was asked; cancelled, not retried")
            await self._emit_cancelled(message.id, task.name, recorded.attempts)
            return Outcome.ack()
        if self.events is not None:
            await self.events.emit(
                "retrying", message.id, task.name, attempt=recorded.attempts, error=error
            )
        try:
            await self.app.broker.publish(
                task.queue,
                delivery.body,
                task_id=message.id,
                delay=delay,
                priority=delivery.priority,  # a retry keeps its place in line
                headers=trace_headers(delivery.headers),  # and its trace
            )
        except BrokerError as exc:
            # Requeued instead: it comes back as a new attempt, none is lost.
            log.error("could not schedule the retry; requeueing", error=str(exc))
            return Outcome.requeue("retry not scheduled")
        log.warning(
            "task failed; retrying",
            retry_in=round(delay, 3),
            error=f"{error.type}: {error.message}",
        )
        return Outcome.ack()

    async def _fail(
        self,
        message: TaskMessage,
        task: Task[Any, Any],
        error: ErrorInfo,
        attempts: int,
        exc: BaseException,
    ) -> Outcome:
        await self._record_failed(message.id, task.name, error, attempts)
        if isinstance(exc, Reject):
            return Outcome.dead_letter(f"rejected: {error.message}")
        tries = f"{attempts} attempts" if attempts > 1 else "1 attempt"
        return Outcome.dead_letter(f"task raised {error.type}: {error.message} (after {tries})")

    async def _poisoned(
        self, message: TaskMessage, task: Task[Any, Any], attempts: int, log: Any
    ) -> Outcome:
        reason = (
            f"poison message: start {attempts} of a task allowed "
            f"{task.retry.max_attempts} attempts; the last one ended without an outcome "
            "(its worker died or was killed)"
        )
        error = ErrorInfo(type=WORKER_LOST, message=reason)
        await self._record_failed(message.id, task.name, error, attempts)
        log.error("poison message; dead-lettering it instead of running it again")
        return Outcome.dead_letter(reason)

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
            await self._record_failed(task_id, name, error, None)
        return Outcome.dead_letter(reason)

    async def _record_failed(
        self, task_id: str, name: str, error: ErrorInfo, attempts: int | None
    ) -> None:
        recorded = await self.writes.transition(task_id, name, TaskState.FAILED, error=error)
        if recorded is not None and self.events is not None:
            await self.events.emit("failed", task_id, name, attempt=attempts, error=error)

    async def _cancelled(
        self, message: TaskMessage, task: Task[Any, Any], attempts: int, log: Any
    ) -> Outcome:
        """Interrupted by a cancel (or cancelled before its call began): recorded
        ``cancelled`` and acked, never retried nor dead-lettered."""
        recorded = await self.writes.transition(message.id, task.name, TaskState.CANCELLED)
        if recorded is None:
            return await self._already_finished(message, log)
        log.info("task cancelled while running")
        await self._emit_cancelled(message.id, task.name, attempts)
        return Outcome.ack()

    async def _emit_cancelled(self, task_id: str, name: str, attempts: int | None) -> None:
        if self.events is not None:
            await self.events.emit("cancelled", task_id, name, attempt=attempts)

    async def refuse_cancel(self, task_id: str) -> None:
        """A cancel reached a sync task running here: it runs on and keeps its outcome."""
        try:
            await self.store.refuse_cancel(task_id)
        except StoreError as exc:
            self.log.warning("could not answer a cancel", task_id=task_id, error=str(exc))
        else:
            self.log.info("cancel refused: a sync task cannot be interrupted", task_id=task_id)

    async def _already_finished(self, message: TaskMessage, log: Any) -> Outcome:
        current = await self.store.get(message.id)
        if current is not None and current.state is TaskState.SUCCEEDED:
            log.info("task already succeeded; acking the redelivery without running it")
            return Outcome.ack()
        if current is not None and current.state is TaskState.CANCELLED:
            log.info("task cancelled; acking its message without running it")
            return Outcome.ack()
        # Failed earlier: its dead letter may not have been published before the crash
        # that brought this message back, so dead-letter it (again, at worst).
        error = current.error if current is not None else None
        what = f"{error.type}: {error.message}" if error else "no error recorded"
        log.warning("task already failed; dead-lettering the redelivery", error=what)
        return Outcome.dead_letter(f"task already failed: {what}")


def _forget(future: asyncio.Future[Any]) -> None:
    """Retrieve an abandoned call's outcome, so asyncio does not log it as lost."""
    if not future.cancelled():
        future.exception()
