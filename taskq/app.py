"""TaskQueue: one app = one broker, one status store, one exchange, and its tasks.

Several apps can live in one process (e.g. ``critical`` and ``scheduler`` on RabbitMQ,
``internal`` on the embedded broker); nothing is global but the app objects.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

import structlog

from taskq.brokers import Broker, DeadLetter, broker_from_url
from taskq.cancel import cancel as cancel_task
from taskq.coalesce import Coalescer
from taskq.errors import ConfigurationError, UnknownTask
from taskq.events import Events
from taskq.handle import TaskHandle
from taskq.retry import RetryPolicy
from taskq.sending import Call, encode_call, encode_calls, send_many, send_one
from taskq.settings import TaskqSettings
from taskq.status import utcnow
from taskq.stores import StatusStore, store_from_url
from taskq.task import MAX_PRIORITY, Task, default_name
from taskq.topology import (
    QueueSpec,
    QueueType,
    Topology,
    check_name,
    check_queue_type,
)
from taskq.workflows.handle import WorkflowHandle, send_workflow
from taskq.workflows.signature import Canvas, Signature

P = ParamSpec("P")
R = TypeVar("R")

log = structlog.get_logger("taskq.app")


def delay_of(countdown: float | None, eta: datetime | None) -> float:
    """Seconds to hold a task back: ``countdown`` or until ``eta`` (0 for a past one)."""
    if countdown is not None and eta is not None:
        raise ConfigurationError("give countdown or eta, not both")
    if eta is not None:
        if not isinstance(eta, datetime) or eta.tzinfo is None:
            raise ConfigurationError(
                f"eta must be a timezone-aware datetime (e.g. datetime.now(UTC) + ...), not {eta!r}"
            )
        return max(0.0, (eta - utcnow()).total_seconds())
    if countdown is None:
        return 0.0
    if isinstance(countdown, bool) or not isinstance(countdown, int | float):
        raise ConfigurationError(f"countdown must be seconds, not {countdown!r}")
    if not math.isfinite(countdown):
        raise ConfigurationError(f"countdown must be a finite number of seconds, not {countdown!r}")
    return max(0.0, float(countdown))


def check_priority(priority: int | None, spec: QueueSpec) -> int:
    """A call's priority, checked before anything is sent: ``0 .. max_priority`` of its
    task (a task sent by a name not registered here: up to the most RabbitMQ allows,
    the broker caps it at the queue's own maximum)."""
    if priority is None:
        return 0
    if spec.authoritative:
        highest = spec.max_priority or 0
    else:
        highest = MAX_PRIORITY
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= highest:
        if spec.authoritative and spec.max_priority is None:
            raise ConfigurationError(
                f"task {spec.task!r} takes no priority (got {priority!r}): declare it "
                "with @app.task(max_priority=N) to send with priority=0..N"
            )
        raise ConfigurationError(
            f"task {spec.task!r} takes a priority from 0 to {highest} (a whole number, "
            f"higher runs first), not {priority!r}"
        )
    return priority


class TaskQueue:
    """The app: registers tasks and sends them.

    >>> app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:5672/",
    ...                 store="redis://127.0.0.1:6379/0")
    >>> @app.task
    ... async def add(x: int, y: int) -> int:
    ...     return x + y

    Every option not given comes from its ``TASKQ_*`` variable, else its default
    (:class:`~taskq.settings.TaskqSettings`; ``self.settings`` holds the effective
    values). ``broker`` and ``store`` take a URL or an instance (default: the embedded
    ``memory://``). ``exchange`` (default ``"taskq"``) names every object the app
    declares, so apps on one vhost never share a queue. ``result_ttl``: seconds a
    finished task's record is kept (default: a day), ``None`` for ever. ``queue_type``
    is the default for task queues and for tasks sent by name that have no queue yet.

    ``consumer_timeout`` must be the broker's (RabbitMQ's default: 30 minutes): no task
    may run longer than half of it (see ``Task.time_limit``). ``max_message_size``:
    a bigger task message raises :class:`MessageTooLarge` at once, before it travels.
    ``events=True`` publishes each task's lifecycle to ``taskq.events`` (see
    :mod:`taskq.events`); off by default, at no cost.
    """

    def __init__(
        self,
        broker: str | Broker | None = None,
        store: str | StatusStore | None = None,
        exchange: str | None = None,
        *,
        queue_type: QueueType | None = None,
        publish_timeout: float | None = None,
        result_ttl: float | Literal["default"] | None = "default",
        consumer_timeout: float | None = None,
        max_message_size: int | None = None,
        events: bool | None = None,
    ) -> None:
        # Checked here with the messages users know; the settings model checks the
        # environment's values (and these again).
        if queue_type is not None:
            check_queue_type(queue_type)
        if publish_timeout is not None and not publish_timeout > 0:
            raise ConfigurationError("publish_timeout must be a positive number of seconds")
        if consumer_timeout is not None and not consumer_timeout > 0:
            raise ConfigurationError("consumer_timeout must be a positive number of seconds")
        if max_message_size is not None and max_message_size < 1:
            raise ConfigurationError("max_message_size must be a positive number of bytes")
        #: The arguments given, as :meth:`TaskqSettings.sources` wants them.
        self.arguments: dict[str, Any] = {
            "broker_url": broker if isinstance(broker, str) else None,
            "store_url": store if isinstance(store, str) else None,
            "exchange": exchange or None,
            "queue_type": queue_type,
            "publish_timeout": publish_timeout,
            "consumer_timeout": consumer_timeout,
            "max_message_size": max_message_size,
            "events": events,
        }
        #: Arguments over ``TASKQ_*`` variables over defaults (see :mod:`taskq.settings`).
        self.settings = TaskqSettings.load(**self.arguments)
        if result_ttl != "default":  # None is an argument here: keep records forever
            self.arguments["result_ttl"] = result_ttl
            self.settings = self.settings.model_copy(update={"result_ttl": result_ttl})
        settings = self.settings
        self.topology = Topology(settings.exchange)
        self.queue_type = check_queue_type(settings.queue_type)
        self.consumer_timeout = float(settings.consumer_timeout)
        self.max_message_size = settings.max_message_size
        self.broker: Broker = (
            broker
            if isinstance(broker, Broker)
            else broker_from_url(
                settings.broker_url, self.topology, publish_timeout=settings.publish_timeout
            )
        )
        self.store: StatusStore = (
            store
            if isinstance(store, StatusStore)
            else store_from_url(
                settings.store_url, ttl=settings.result_ttl, prefix=self.topology.exchange
            )
        )
        #: Registered tasks by name.
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Lifecycle events (:mod:`taskq.events`); ``None`` while off, the default.
        self.events: Events | None = (
            Events.for_broker(self.broker, self.topology.exchange) if settings.events else None
        )
        self._connected = False
        self._connect_lock = asyncio.Lock()
        #: Queues of tasks sent by a name not registered here, built once per name.
        self._unregistered: dict[str, QueueSpec] = {}
        #: ``store.create`` of concurrent sends, one ``create_many`` per loop turn.
        self._creates: Coalescer[None, tuple[str, str], bool] = Coalescer(
            lambda _, items: self.store.create_many(items),
            lambda _, item: self.store.create(*item),
        )

    def __repr__(self) -> str:
        return (
            f"<TaskQueue exchange={self.topology.exchange!r} "
            f"broker={self.broker!r} store={self.store!r}>"
        )

    # -- registration ---------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        /,
        *,
        name: str | None = None,
        queue_type: QueueType | None = None,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        retry_jitter: bool = True,
        retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        timeout: float | None = None,
        broadcast: bool = False,
        max_priority: int | None = None,
        prefetch: int | None = None,
        rate_limit: str | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        fn: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue_type: QueueType | None = None,
        max_retries: int = 3,
        retry_backoff: float = 1.0,
        retry_backoff_max: float = 300.0,
        retry_jitter: bool = True,
        retry_on: type[BaseException] | Sequence[type[BaseException]] = (Exception,),
        timeout: float | None = None,
        broadcast: bool = False,
        max_priority: int | None = None,
        prefetch: int | None = None,
        rate_limit: str | None = None,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a function as a task: ``@app.task`` or ``@app.task(name="emails.send")``.

        The name defaults to ``"<module>.<function name>"``; it is the routing key and
        names the queue, so keep it stable once tasks are in flight.

        An attempt that raises one of ``retry_on`` is tried again up to ``max_retries``
        times, after a backoff doubling from ``retry_backoff`` seconds up to
        ``retry_backoff_max`` (drawn from 0 to that with ``retry_jitter``); see
        :mod:`taskq.retry`. ``timeout``: seconds an attempt may run (default and
        ceiling: half the app's ``consumer_timeout``).

        ``broadcast=True``: every live worker process serving the task runs each call
        once (:mod:`taskq.broadcast`). ``max_priority``: the task's queue is a priority
        queue, calls sent with ``priority=0..max_priority``; ``prefetch``: messages a
        worker takes from this queue ahead (default: its concurrency; ``1`` for strict
        priority order). ``rate_limit="20/s"`` (or ``/m``, ``/h``): at most that many
        starts per period across all workers (:mod:`taskq.ratelimit`).
        """
        policy = RetryPolicy.build(
            max_retries=max_retries,
            retry_backoff=retry_backoff,
            retry_backoff_max=retry_backoff_max,
            retry_jitter=retry_jitter,
            retry_on=retry_on,
        )

        def decorator(fn: Callable[P, R]) -> Task[P, R]:
            if not callable(fn):
                raise ConfigurationError(f"@app.task decorates a function, not {fn!r}")
            task = Task(
                self,
                fn,
                name=name or default_name(fn),
                queue_type=queue_type or self.queue_type,
                retry=policy,
                timeout=timeout,
                broadcast=broadcast,
                max_priority=max_priority,
                prefetch=prefetch,
                rate_limit=rate_limit,
            )
            if task.name in self.tasks:
                raise ConfigurationError(
                    f"a task named {task.name!r} is already registered; give one of them "
                    "another name with @app.task(name=...)"
                )
            self.tasks[task.name] = task
            return task

        return decorator(fn) if fn is not None else decorator

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(name) from None

    # -- connection -----------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        """Connect broker and store. Idempotent; sending connects on first use too."""
        if self._connected:
            return
        async with self._connect_lock:
            if not self._connected:
                await self.store.connect()
                await self.broker.connect()
                self._connected = True

    async def close(self) -> None:
        async with self._connect_lock:
            self._connected = False
            try:
                if self.events is not None:
                    await self.events.close()
                await self.broker.close()
            finally:
                await self.store.close()

    async def __aenter__(self) -> TaskQueue:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- sending --------------------------------------------------------------------

    def handle(self, task_id: str, name: str | None = None) -> TaskHandle:
        """A handle for a task id kept elsewhere (e.g. returned to an API client)."""
        return TaskHandle(self, task_id, name)

    # -- workflows (chain, group, chord: taskq.workflows) ----------------------------

    def signature(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        immutable: bool = False,
    ) -> Signature:
        """A step of a workflow by task name: no import of the task's code needed.

        >>> render, send = app.signature("emails.render", [uid]), app.signature("emails.send")
        >>> await taskq.chain(render, send).delay()
        """
        return Signature(name, args, kwargs, countdown=countdown, immutable=immutable, app=self)

    async def send_workflow(
        self, workflow: Canvas, *, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """Send a chain, group, chord (or a lone signature) as a workflow; its handle
        once its shape is recorded and its first steps confirmed by the broker.

        ``workflow_id`` is an idempotency key: sending an id the store knows publishes
        only the first steps that are missing (completing a send that failed half
        way), with the shape first recorded. Steps run under the task ids
        ``<workflow id>.<position>``; see :mod:`taskq.workflows`.
        """
        return await send_workflow(self, workflow, workflow_id)

    def workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle for a workflow id kept elsewhere."""
        return WorkflowHandle(self, workflow_id)

    async def send(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        required: bool = True,
    ) -> TaskHandle:
        """Send a task by name: the sender needs no import of the task's code.

        If the task is registered on this app its arguments are validated here;
        otherwise they only have to be JSON-serializable and the worker validates them.
        ``task_id``, ``countdown``, ``eta``, ``priority`` and ``required`` are as in
        :meth:`Task.send`.
        """
        task = self.tasks.get(name)
        if task is not None:
            return await self.send_task(
                task,
                args,
                kwargs or {},
                task_id=task_id,
                countdown=countdown,
                eta=eta,
                priority=priority,
                required=required,
            )
        delay = delay_of(countdown, eta)
        spec = self._by_name(name)
        level = check_priority(priority, spec)
        return await self._publish(spec, args, kwargs or {}, task_id, delay, level)

    async def send_task(
        self,
        task: Task[Any, Any],
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        *,
        task_id: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        required: bool = True,
    ) -> TaskHandle:
        delay = delay_of(countdown, eta)
        level = check_priority(priority, task.queue)
        task.validate(args, kwargs)  # bad arguments fail here, at the sender
        return await self._publish(task.queue, args, kwargs, task_id, delay, level)

    async def send_many(
        self,
        name: str,
        calls: Sequence[Call],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
    ) -> list[TaskHandle]:
        """Send many calls of one task by name; their handles, in the order of ``calls``.

        Each call is ``(args, kwargs)`` or ``(args, kwargs, task_id)``. All are checked
        and encoded first, as :meth:`send` checks one (validated against the task if it
        is registered here, else only JSON): the first bad one raises, its index in the
        message, and nothing is written or published. Then every ``queued`` record is
        written in one store round trip and the messages are published with their
        confirms pipelined (at most :data:`~taskq.brokers.base.PUBLISH_WINDOW` in
        flight). An explicit task id the store already knows is not published again;
        its handle is returned all the same. ``countdown`` / ``eta`` delay every call.

        Raises :class:`~taskq.errors.BulkPublishError` if any publish was not confirmed:
        ``.not_confirmed`` lists their task ids (their records are removed again, so a
        re-send with those ids is safe), ``.confirmed`` the handles of the others.

        >>> handles = await app.send_many("emails.send", [((uid, "hi"), {}) for uid in uids])
        """
        task = self.tasks.get(name)
        if task is not None:
            spec, validate = task.queue, task.validate
        else:
            spec, validate = self._by_name(name), None
        delay = delay_of(countdown, eta)
        level = check_priority(priority, spec)
        encoded = encode_calls(spec.task, calls, validate, self.max_message_size)
        return await send_many(self, spec, encoded, delay, priority=level)

    def _by_name(self, name: str) -> QueueSpec:
        """The queue of a task sent by a name not registered here: the task's queue as
        it exists, else a new one of the app's queue type."""
        spec = self._unregistered.get(name)
        if spec is None:
            check_name(name, what="task name")
            self.topology.queue_name(name)  # refuses a name too long for its queue
            spec = QueueSpec(task=name, queue_type=self.queue_type, authoritative=False)
            self._unregistered[name] = spec
        return spec

    async def _publish(
        self,
        spec: QueueSpec,
        args: Sequence[Any],
        kwargs: Mapping[str, Any],
        task_id: str | None,
        delay: float = 0.0,
        priority: int = 0,
    ) -> TaskHandle:
        call = encode_call(spec.task, args, kwargs, task_id, self.max_message_size)
        return await send_one(self, spec, call, delay, priority=priority)

    # -- cancelling -------------------------------------------------------------------

    async def cancel(self, task_id: str) -> bool:
        """Cancel a task, for good: ``True`` when it will not run (it was waiting:
        queued, delayed or between retries, on any worker, after any restart) or was
        interrupted (a running async task, within about a second); ``False`` when it had
        already finished, or is a running sync task, which runs to its end and keeps
        its outcome. A cancelled task's ``result()`` raises
        :class:`~taskq.errors.TaskCancelled`. Raises :class:`~taskq.errors.UnknownTask`
        for an id the status store does not know. See :mod:`taskq.cancel`.

        >>> await app.cancel(task_id)
        """
        return await cancel_task(self, task_id)

    # -- dead letters ---------------------------------------------------------------

    async def dead_letters(self, task: str | None = None, limit: int = 100) -> list[DeadLetter]:
        """Up to ``limit`` messages of the dead-letter queue (of ``task`` only, if
        given), oldest first, each with its ``task_id``, ``task``, ``reason`` and
        ``dead_at``. Looking leaves them where they are; it needs the broker only."""
        if limit < 0:
            raise ConfigurationError(f"limit must be 0 or more, not {limit!r}")
        return await self.broker.dead_letters(limit, task=task)

    async def requeue_dead(
        self, task: str | None = None, ids: Sequence[str] = ()
    ) -> list[DeadLetter]:
        """Run dead-lettered tasks again: those of ``task``, or with these task ``ids``,
        or all of them; returns the dead letters requeued.

        For each, the status is reset first (``queued``, no attempt, no error: a
        ``failed`` task may run again only this way), then the message is published
        back to its task's queue; the dead letter goes once that is confirmed. If the
        store or the publish fails, the error is raised and the letters not yet
        requeued stay dead (a task whose reset went through but not its publish reads
        ``queued`` until it is requeued again). A dead letter without a task id or a
        task name to route by stays, whatever is asked.

        >>> await app.requeue_dead(task="emails.send")
        >>> await app.requeue_dead(ids=[handle.id])
        """
        await self.connect()

        async def prepare(task_id: str, name: str) -> QueueSpec:
            await self.store.reset(task_id, name)
            registered = self.tasks.get(name)
            if registered is not None:
                return registered.queue
            return QueueSpec(name, queue_type=self.queue_type, authoritative=False)

        return await self.broker.requeue_dead(task=task, ids=ids, prepare=prepare)

    async def purge_dead(self) -> int:
        """Delete every dead letter for good; returns how many. Their tasks stay
        ``failed`` in the status store."""
        return await self.broker.purge_dead()
