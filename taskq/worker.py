"""Worker: consume an app's task queues, run tasks concurrently, settle each message.

Prefetch = concurrency: the broker hands out at most that many unsettled messages per
task queue (a task's own ``prefetch`` instead, where it has one: :mod:`taskq.prefetch`),
and ``concurrency`` runner coroutines take them from an inbox; a message waiting there
has not started and is requeued at stop. Async tasks run on the event
loop; sync tasks in a thread pool of ``threads`` threads (default: ``concurrency``).

Stopping is graceful: stop consuming, give back what has not started (requeue, never
reject), let running tasks finish for up to ``grace`` seconds, then cancel the rest.
A cancelled or crashed task's message was never acked, so the broker redelivers it.

A sync task that runs past its time limit holds its thread for good (Python cannot
stop a thread): the worker swaps in a fresh thread pool at once, and under :meth:`run`
stops so that its process is replaced (``replace_requested``; ``taskq worker``
re-executes itself), which ends the stuck thread.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import TYPE_CHECKING, Any

from taskq.app import TaskQueue
from taskq.brokers.base import Consumer, Delivery, nonblocking
from taskq.cancel import decode_control
from taskq.errors import BrokerError, ConfigurationError
from taskq.execution import TaskRunner
from taskq.heartbeat import WorkerHeartbeat
from taskq.logs import get_logger
from taskq.prefetch import consume_tasks
from taskq.settings import TaskqSettings
from taskq.settle import Outcome, settle
from taskq.signals import stop_on_signals
from taskq.task import Task
from taskq.throttle import Arrival, Inbox, Throttle
from taskq.topology import topic_matches
from taskq.workerid import new_worker_id

if TYPE_CHECKING:
    from taskq.metrics import WorkerMetrics

log = get_logger("taskq.worker")

#: Names of the threads that run sync tasks start with this.
THREAD_NAME_PREFIX = "taskq-task"

#: A delivery is started only if it can finish within this share of the broker's
#: ``consumer_timeout``, counted from when it reached the worker (it may have waited
#: in the inbox behind other tasks); otherwise it goes back to its queue unstarted.
ACK_DEADLINE_SHARE = 0.9


class Worker:
    """Runs the tasks of ``app`` whose names match ``tasks`` (AMQP topic patterns:
    ``*`` one word, ``#`` any number; default: every registered task).

    >>> async with Worker(app, concurrency=16, tasks=["emails.*"]):
    ...     ...                       # consumes in the background of this event loop
    >>> await Worker(app).run()       # until stop() or SIGTERM / SIGINT
    """

    def __init__(
        self,
        app: TaskQueue,
        *,
        concurrency: int | None = None,
        tasks: Sequence[str] | None = None,
        threads: int | None = None,
        grace: float | None = None,
        max_tasks: int | None = None,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        if concurrency is not None and concurrency < 1:
            raise ConfigurationError("concurrency must be at least 1")
        if threads is not None and threads < 1:
            raise ConfigurationError("threads must be at least 1")
        if max_tasks is not None and max_tasks < 1:
            raise ConfigurationError("max_tasks must be at least 1")
        if isinstance(tasks, str):
            raise ConfigurationError("tasks= takes a list of patterns, e.g. ['emails.*']")
        # Not given: TASKQ_CONCURRENCY / TASKQ_THREADS / TASKQ_GRACE, else 16 / the
        # concurrency / 30 s (taskq.settings).
        settings = TaskqSettings.load(concurrency=concurrency, threads=threads, grace=grace)
        self.app = app
        self.concurrency = settings.concurrency
        self.patterns = list(tasks) if tasks is not None else None
        self.threads = settings.threads or settings.concurrency
        self.grace = settings.grace
        #: Stop gracefully after this many tasks ran (``--max-tasks-per-child``: the
        #: supervisor then starts a fresh process, which frees what user code leaked).
        self.max_tasks = max_tasks
        self.tasks_done = 0
        #: Prometheus metrics of the runs (:mod:`taskq.metrics`); ``None``: none kept.
        self.metrics = metrics
        #: ``<hostname>-<pid>`` (``-2``, ``-3``... for more workers in one process):
        #: names its control and broadcast queues and its broadcast records.
        self.id = new_worker_id()
        self._consumer: Consumer | None = None
        #: This worker's control queue (cancels of running tasks: taskq.cancel).
        self._control: Consumer | None = None
        #: Deliveries not started yet, with when they arrived (monotonic seconds).
        self._inbox: Inbox[Arrival | None] = Inbox()
        #: Admits the deliveries of rate-limited tasks (taskq.throttle); set at start.
        self._throttle: Throttle | None = None
        self._runners: list[asyncio.Task[None]] = []
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = False
        self._stopped: asyncio.Event | None = None
        self._stop_requested: asyncio.Event | None = None
        self._owns_connection = False
        self._started = False
        self._runner: TaskRunner | None = None
        #: ``worker.heartbeat`` events while the app's events are on (taskq.heartbeat).
        self._heartbeat: WorkerHeartbeat | None = None
        #: Set when a sync task overran its time limit: this process should be
        #: replaced (``taskq worker`` does so once :meth:`run` returns).
        self.replace_requested = False

    def __repr__(self) -> str:
        return f"<Worker {self.id} concurrency={self.concurrency} tasks={self.patterns}>"

    @property
    def selected_tasks(self) -> list[Task[Any, Any]]:
        tasks = list(self.app.tasks.values())
        if self.patterns is None:
            return tasks
        return [t for t in tasks if any(topic_matches(p, t.name) for p in self.patterns)]

    async def start(self) -> None:
        """Connect (if the app is not yet) and start consuming in the background."""
        if self._stopped is not None:
            raise RuntimeError("a Worker starts once; make a new one")
        tasks = self.selected_tasks
        if not tasks:
            registered = ", ".join(sorted(self.app.tasks)) or "none"
            raise ConfigurationError(
                f"no registered task matches {self.patterns} (registered: {registered})"
            )
        self._stopped = asyncio.Event()
        self._owns_connection = not self.app.connected
        try:
            await self.app.connect()
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix=THREAD_NAME_PREFIX)
            self._throttle = Throttle(
                self.app, tasks, self._inbox, ack_deadline_share=ACK_DEADLINE_SHARE
            )
            runner = TaskRunner(
                self.app,
                self._pool,
                worker_id=self.id,
                on_overrun=self._overrun,
                metrics=self.metrics,
            )
            self._runner = runner
            self._runners = [
                asyncio.create_task(self._run_inbox(runner), name=f"taskq-runner-{i}")
                for i in range(self.concurrency)
            ]
            self._consumer = await consume_tasks(
                self.app.broker, tasks, self._deliver, concurrency=self.concurrency, worker=self.id
            )
            self._control = await self.app.broker.consume_control(self.id, self._on_control)
        except BaseException:
            await self.stop(grace=0)  # undo what started; nothing was consumed yet
            raise
        self._started = True
        self._heartbeat = WorkerHeartbeat.start_for(self)
        log.info(
            "worker started",
            worker=self.id,
            pid=os.getpid(),  # also in the id, after a hostname that may hold '-'
            tasks=[t.name for t in tasks],
            concurrency=self.concurrency,
            broker=self.app.broker.display_url,
        )

    @nonblocking
    async def _deliver(self, delivery: Delivery) -> None:
        self._inbox.put_nowait((delivery, time.monotonic()))

    async def _on_control(self, body: bytes) -> None:
        """A control message: the cancel of a task, interrupted here if it runs here
        and is async (:mod:`taskq.cancel`)."""
        task_id = decode_control(body)
        runner = self._runner
        if task_id is None or runner is None:
            log.debug("control message ignored", worker=self.id, size=len(body))
            return
        interrupted = runner.cancels.request(task_id)
        if interrupted is False:
            await runner.refuse_cancel(task_id)
        elif interrupted:
            log.info("interrupting a cancelled task", worker=self.id, task_id=task_id)

    def _too_late(self, delivery: Delivery, arrived: float) -> bool:
        """Could this delivery still be acked before the broker's consumer timeout?"""
        task = self.app.tasks.get(delivery.task)
        if task is None:
            return False  # not run: rejected at once
        waited = time.monotonic() - arrived
        return waited + task.time_limit > self.app.consumer_timeout * ACK_DEADLINE_SHARE

    async def _run_inbox(self, runner: TaskRunner) -> None:
        while True:
            item = await self._inbox.get()
            if item is None:
                return
            delivery, arrived = item
            if self._stopping or self._spent:  # not started: give it back
                await settle(self.app.broker, delivery, Outcome.requeue("worker stopping"), log)
                continue
            if self._too_late(delivery, arrived):
                log.warning(
                    "delivery waited too long to finish before the broker's consumer "
                    "timeout; requeued unstarted",
                    queue=delivery.queue,
                    waited=round(time.monotonic() - arrived, 3),
                )
                await settle(self.app.broker, delivery, Outcome.requeue("waited too long"), log)
                continue
            throttle = self._throttle
            if (
                throttle is not None
                and delivery.task in throttle.limited
                and not await throttle.admit(delivery, arrived)
            ):
                continue  # parked until its start slot, or delayed in the broker
            outcome, task_log = await runner.run(delivery)
            try:
                await settle(self.app.broker, delivery, outcome, task_log)
            except Exception:
                # Unsettled, the message goes back when the consumer closes; this
                # runner lives on to take the next one.
                task_log.exception("could not settle the message; left for redelivery")
            self._count_done()

    def running_count(self) -> int:
        """Tasks being run now."""
        return 0 if self._runner is None else len(self._runner.cancels)

    @property
    def _spent(self) -> bool:
        return self.max_tasks is not None and self.tasks_done >= self.max_tasks

    def _count_done(self) -> None:
        self.tasks_done += 1
        if self.tasks_done == self.max_tasks:
            log.info("worker recycling after its task limit", worker=self.id, tasks=self.tasks_done)
            self.request_stop()

    async def stop(self, grace: float | None = None) -> None:
        """Stop gracefully; idempotent. Waits ``grace`` seconds (default: the worker's)
        for running tasks, then cancels them; their messages go back to the queue."""
        if self._stopped is None:
            return
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        grace = self.grace if grace is None else grace
        try:
            if self._consumer is not None:
                try:
                    await self._consumer.cancel()
                except BrokerError as exc:
                    log.warning("could not cancel the consumer", error=str(exc))
            await self._requeue_waiting()
            for _ in self._runners:
                self._inbox.put_nowait(None)  # wakes idle runners; busy ones exit after
            _, running = (
                await asyncio.wait(self._runners, timeout=grace) if self._runners else ((), ())
            )
            if running:
                log.warning("grace period over; cancelling running tasks", running=len(running))
                for t in running:
                    t.cancel()
                await asyncio.gather(*running, return_exceptions=True)
            await self._requeue_waiting()
            if self._consumer is not None:
                await self._consumer.close()  # anything still unsettled goes back
        finally:
            if self._heartbeat is not None:
                await self._heartbeat.stop()
            if self._control is not None:  # kept through the grace: cancels still land
                try:
                    await self._control.close()
                except BrokerError as exc:
                    log.warning("could not close the control queue", error=str(exc))
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            if self._owns_connection:
                await self.app.close()
            if self._started:
                log.info("worker stopped", worker=self.id)
            self._stopped.set()

    async def _requeue_waiting(self) -> None:
        if self._throttle is not None:
            self._throttle.unpark_all()
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if item is not None:
                await settle(self.app.broker, item[0], Outcome.requeue("worker stopping"), log)

    def _overrun(self, task: Task[Any, Any]) -> None:
        """A sync task overran its limit and keeps its thread: give the runners a fresh
        pool now, and ask for this process to be replaced."""
        old, self._pool = (
            self._pool,
            ThreadPoolExecutor(self.threads, thread_name_prefix=THREAD_NAME_PREFIX),
        )
        if self._runner is not None:
            self._runner.threads = self._pool
        if old is not None:
            old.shutdown(wait=False)  # calls queued there still run on its free threads
        log.error(
            "sync task overran its time limit and still holds its thread; "
            "replacing the thread pool, and the worker process under `run`",
            worker=self.id,
            task=task.name,
            timeout=task.time_limit,
        )
        self.replace_requested = True
        self.request_stop()

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop (safe from a signal handler)."""
        if self._stop_requested is not None:
            self._stop_requested.set()

    async def run(self) -> None:
        """Start, run until :meth:`stop` / :meth:`request_stop` or SIGTERM / SIGINT, stop."""
        self._stop_requested = asyncio.Event()
        try:
            with stop_on_signals(self.request_stop):
                await self.start()
                assert self._stopped is not None
                waiters = [
                    asyncio.create_task(self._stop_requested.wait()),
                    asyncio.create_task(self._stopped.wait()),
                ]
                try:
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    for w in waiters:
                        w.cancel()
                log.info("stop requested; finishing running tasks", grace=self.grace)
        finally:
            await self.stop()

    async def __aenter__(self) -> Worker:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
