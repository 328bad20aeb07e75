"""TaskQueue: one app = one broker, one status store, one exchange, and its tasks.

Several apps can live in one process (e.g. ``critical`` and ``scheduler`` on RabbitMQ,
``internal`` on the embedded broker); nothing is global but the app objects.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, Literal, ParamSpec, TypeVar, overload

from taskq.app_dead import AppDeadLetters
from taskq.app_schedules import AppSchedules
from taskq.app_sending import AppSending
from taskq.app_sending import check_priority as check_priority
from taskq.app_sending import delay_of as delay_of
from taskq.app_workflows import AppWorkflows
from taskq.brokers import Broker, broker_from_url
from taskq.cancel import cancel as cancel_task
from taskq.coalesce import Coalescer
from taskq.errors import ConfigurationError, UnknownTask
from taskq.events import Events
from taskq.handle import TaskHandle
from taskq.logs import get_logger
from taskq.retry import RetryPolicy
from taskq.schedules import registry as schedules
from taskq.settings import TaskqSettings
from taskq.stores import StatusStore, store_from_url
from taskq.task import Task, default_name
from taskq.topology import (
    QueueSpec,
    QueueType,
    Topology,
    check_queue_replicas,
    check_queue_type,
)
from taskq.tracing import Tracing, detect_tracing
from taskq.urls import join_urls, split_urls

P = ParamSpec("P")
R = TypeVar("R")

log = get_logger("taskq.app")


class TaskQueue(AppSending, AppWorkflows, AppSchedules, AppDeadLetters):
    """The app: registers tasks and sends them.

    >>> app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:5672/",
    ...                 store="redis://127.0.0.1:6379/0")
    >>> @app.task
    ... async def add(x: int, y: int) -> int:
    ...     return x + y

    Every option not given comes from its ``TASKQ_*`` variable, else its default
    (:class:`~taskq.settings.TaskqSettings`; ``self.settings`` holds the effective
    values). ``broker`` and ``store`` take a URL or an instance (default: the embedded
    ``memory://``); ``broker`` also a RabbitMQ cluster's nodes, as a list of URLs or
    one string of them separated by ``;``, and ``queue_replicas`` sets how many nodes
    each new quorum queue is replicated on (default: RabbitMQ's). ``exchange`` (default
    ``"taskq"``) names every object the app declares, so apps on one vhost never share a
    queue. ``result_ttl``: seconds a finished task's record is kept (default: a day),
    ``None`` for ever. ``queue_type`` is the default for task queues and for tasks sent
    by name that have no queue yet.

    ``consumer_timeout`` must be the broker's (RabbitMQ's default: 30 minutes): no task
    may run longer than half of it (see ``Task.time_limit``). ``max_message_size``:
    a bigger task message raises :class:`MessageTooLarge` at once, before it travels.
    ``events=True`` publishes each task's lifecycle to ``taskq.events`` (see
    :mod:`taskq.events`); off by default, at no cost. ``store_schema``: the PostgreSQL
    store's schema (default: named after ``exchange``).
    """

    def __init__(
        self,
        broker: str | Sequence[str] | Broker | None = None,
        store: str | StatusStore | None = None,
        exchange: str | None = None,
        *,
        queue_type: QueueType | None = None,
        queue_replicas: int | None = None,
        publish_timeout: float | None = None,
        result_ttl: float | Literal["default"] | None = "default",
        consumer_timeout: float | None = None,
        max_message_size: int | None = None,
        events: bool | None = None,
        store_schema: str | None = None,
    ) -> None:
        # Checked here with the messages users know; the settings model checks the
        # environment's values (and these again).
        if queue_type is not None:
            check_queue_type(queue_type)
        check_queue_replicas(queue_replicas)
        if broker is not None and not isinstance(broker, str | Broker):
            broker = join_urls(split_urls(broker))  # a cluster's nodes, as one string
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
            "queue_replicas": queue_replicas,
            "publish_timeout": publish_timeout,
            "consumer_timeout": consumer_timeout,
            "max_message_size": max_message_size,
            "events": events,
            "store_schema": store_schema,
        }
        #: Arguments over ``TASKQ_*`` variables over defaults (see :mod:`taskq.settings`).
        self.settings = TaskqSettings.load(**self.arguments)
        if result_ttl != "default":  # None is an argument here: keep records forever
            self.arguments["result_ttl"] = result_ttl
            self.settings = self.settings.model_copy(update={"result_ttl": result_ttl})
        settings = self.settings
        self.topology = Topology(settings.exchange, settings.queue_replicas)
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
                settings.store_url,
                ttl=settings.result_ttl,
                prefix=self.topology.exchange,
                schema=settings.store_schema,
            )
        )
        #: Registered tasks by name.
        self.tasks: dict[str, Task[Any, Any]] = {}
        #: Periodic schedules (``@app.periodic``), run by ``taskq scheduler``.
        self.schedules = schedules.Schedules()
        #: Lifecycle events (:mod:`taskq.events`); ``None`` while off, the default.
        self.events: Events | None = (
            Events.for_broker(self.broker, self.topology.exchange) if settings.events else None
        )
        #: Traces (:mod:`taskq.tracing`): set at connect when a tracer provider is set,
        #: or by ``taskq.tracing.instrument(app)``; ``None`` while off.
        self.tracing: Tracing | None = None
        self._connected = False
        self._connect_lock = asyncio.Lock()
        #: Queues of tasks sent by a name not registered here, built once per name.
        self._unregistered: dict[str, QueueSpec] = {}
        #: ``store.create`` of concurrent sends, one ``create_many`` per loop turn.
        self._creates: Coalescer[None, tuple[str, str, str | None], bool] = Coalescer(
            lambda _, items: self.store.create_many(items),
            lambda _, item: self.store.create(*item),
            eager=True,
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
                self.tracing = self.tracing or detect_tracing(self.topology.exchange)
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
