"""A worker's Prometheus metrics: what its runs did, per task name.

The figures come from the two places a run's life is decided (:mod:`taskq.observe`):
the state recorded in the status store (started, succeeded, failed, retried,
cancelled) and the outcome of the delivery (dead-lettered). The ``task`` label is the
task whose queue the delivery came from, always a task registered on this worker:
a message naming anything else cannot add a label value, and no label holds a task id
or arguments.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from taskq.observe import RunCall, RunObserver
from taskq.settle import Settlement
from taskq.status import TaskState

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.brokers.base import Delivery
    from taskq.settle import Outcome
    from taskq.status import ErrorInfo, TaskStatus

#: Seconds: a task's run, from a few milliseconds to a quarter of an hour.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)
#: Seconds a task waited in its queue: up to an hour (a backlog, or a countdown).
WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)

#: The ``state`` label of ``taskq_tasks_total`` for each state recorded.
_STATE_LABEL = {
    TaskState.STARTED: "started",
    TaskState.RETRYING: "retried",
    TaskState.SUCCEEDED: "succeeded",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "cancelled",
}


#: Every value of the ``state`` label.
STATES = ("started", "succeeded", "failed", "retried", "cancelled", "dead_lettered")


class _TaskMetrics:
    """One task name's children of each metric, made once: ``labels()`` takes a lock
    and checks its values on every call, a third of what a run's figures cost."""

    __slots__ = ("counts", "duration", "running", "wait")

    def __init__(self, metrics: WorkerMetrics, task: str) -> None:
        self.counts = {state: metrics.tasks.labels(task, state) for state in STATES}
        self.duration = metrics.duration.labels(task)
        self.wait = metrics.wait.labels(task)
        self.running = metrics.running.labels(task)


class _Run:
    """The delivery being handled by one runner, as the metrics follow it."""

    __slots__ = ("of", "started")

    def __init__(self, of: _TaskMetrics) -> None:
        self.of = of
        #: ``perf_counter()`` at its recorded start; ``None`` until then and once ended.
        self.started: float | None = None


_current: ContextVar[_Run | None] = ContextVar("taskq_metrics_run", default=None)


class WorkerMetrics(RunObserver):
    """The metrics of one worker process, in ``registry`` (a fresh one by default: give
    ``prometheus_client.REGISTRY`` to serve them with your own).

    >>> metrics = WorkerMetrics()
    >>> worker = Worker(app, metrics=metrics)
    >>> serve(metrics.registry, port=9100)     # taskq.metrics.serve

    Under ``taskq worker --processes N`` each child writes its figures to the files of
    prometheus_client's multiprocess mode, and the supervisor serves their sum.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True) if registry is None else registry
        self.tasks = Counter(
            "taskq_tasks",
            "Tasks by what happened to them: started, succeeded, failed, retried, "
            "cancelled, dead_lettered.",
            ["task", "state"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "taskq_task_duration_seconds",
            "Seconds from a task's recorded start to its recorded outcome.",
            ["task"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.wait = Histogram(
            "taskq_task_wait_seconds",
            "Seconds from a task's queued record (its publish) to its first start.",
            ["task"],
            buckets=WAIT_BUCKETS,
            registry=self.registry,
        )
        self.running = Gauge(
            "taskq_tasks_running",
            "Tasks running now.",
            ["task"],
            registry=self.registry,
            multiprocess_mode="livesum",  # a dead child's running tasks are not running
        )
        self.reconnects = Counter(
            "taskq_broker_reconnects",
            "Times a connection to the broker was re-established.",
            registry=self.registry,
        )
        self.store_errors = Counter(
            "taskq_store_errors",
            "Status store calls that failed.",
            registry=self.registry,
        )
        self._watched: set[int] = set()
        self._per_task: dict[str, _TaskMetrics] = {}

    def watch(self, app: TaskQueue) -> None:
        """Count ``app``'s broker reconnects and store errors (once per app)."""
        if id(app) in self._watched:
            return
        self._watched.add(id(app))
        app.broker.on_reconnect(self.reconnects.inc)
        app.store.on_error(lambda _: self.store_errors.inc())

    # -- RunObserver ------------------------------------------------------------------

    async def run(self, delivery: Delivery, call: RunCall) -> tuple[Outcome, Any]:
        of = self._per_task.get(delivery.task)
        if of is None:
            of = self._per_task[delivery.task] = _TaskMetrics(self, delivery.task)
        run = _Run(of)
        token = _current.set(run)
        try:
            outcome, log = await call(delivery)
        finally:
            _current.reset(token)
            if run.started is not None:  # stopped mid-run: no outcome, no longer running
                of.running.dec()
        if outcome.settlement is Settlement.DEAD_LETTER:
            of.counts["dead_lettered"].inc()
        return outcome, log

    def recorded(
        self, state: TaskState, record: TaskStatus | None, error: ErrorInfo | None
    ) -> None:
        run = _current.get()
        if run is None or record is None:
            return
        of = run.of
        if record.state is TaskState.STARTED:
            run.started = time.perf_counter()
            of.running.inc()
            of.counts["started"].inc()
            if record.attempts == 1 and record.created_at and record.started_at:
                waited = (record.started_at - record.created_at).total_seconds()
                of.wait.observe(max(0.0, waited))
            return
        label = _STATE_LABEL.get(record.state)
        if label is not None:
            of.counts[label].inc()
        if run.started is not None:
            of.duration.observe(time.perf_counter() - run.started)
            of.running.dec()
            run.started = None
