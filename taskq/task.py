"""A task: a plain function, registered on an app, that can be called or sent.

Calling a task calls the function (nothing is published), so tasks stay testable as
plain functions. ``delay`` and ``send`` publish a call for a worker to run.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

import pydantic

from taskq.broadcast import check_broadcast_options
from taskq.errors import ConfigurationError, InvalidArguments
from taskq.ratelimit import RateLimit, parse_rate_limit
from taskq.retry import RetryPolicy
from taskq.topology import QueueSpec, QueueType, check_name, check_queue_type
from taskq.workflows.signature import Signature

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.handle import TaskHandle
    from taskq.sending import Call

P = ParamSpec("P")
R = TypeVar("R")

#: The longest a task may run, as a share of the broker's ``consumer_timeout``: a
#: message must be acked well before RabbitMQ gives up on its consumer, closes the
#: channel and redelivers everything on it (a second run, in parallel).
TIMEOUT_SHARE = 0.5


#: The most priority levels RabbitMQ gives a classic queue (``x-max-priority``).
MAX_PRIORITY = 255


def _check_int(value: int | None, task: str, what: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigurationError(
            f"task {task!r}: {what} must be a whole number from {low} to {high}, not {value!r}"
        )
    return value


def default_name(fn: Callable[..., Any]) -> str:
    return f"{fn.__module__}.{fn.__name__}"


def _argument_validator(
    fn: Callable[..., Any],
) -> Callable[..., tuple[tuple[Any, ...], dict[str, Any]]]:
    """A pydantic validator of ``fn``'s signature (lax mode: "42" becomes 42, a string
    becomes a UUID) that returns the validated arguments instead of calling ``fn``.

    Built once per task: it keeps argument validation apart from the call itself, so a
    ``ValidationError`` raised inside the task body is the task failing, not bad input.
    """

    def capture(*args: Any, **kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return args, kwargs

    functools.update_wrapper(capture, fn)  # signature and annotations of fn
    del capture.__wrapped__  # type: ignore[attr-defined]  # keep inspect on capture's own flags
    capture.__signature__ = inspect.signature(fn)  # type: ignore[attr-defined]
    try:
        validator = pydantic.validate_call(config={"arbitrary_types_allowed": True})(capture)
    except pydantic.PydanticUserError as exc:
        raise ConfigurationError(
            f"task {default_name(fn)!r} has a signature pydantic cannot validate: {exc}"
        ) from exc
    return validator


def describe_validation_error(exc: pydantic.ValidationError, positional: Sequence[str]) -> str:
    """``x: Input should be a valid integer``: pydantic locates positional arguments by
    index; name them after the parameter they bind to."""
    parts = []
    for err in exc.errors(include_url=False):
        loc = list(err["loc"])
        if loc and isinstance(loc[0], int) and loc[0] < len(positional):
            loc[0] = positional[loc[0]]
        where = ".".join(str(p) for p in loc) or "arguments"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


class Task(Generic[P, R]):
    """A registered task. Create with ``@app.task``, never directly."""

    def __init__(
        self,
        app: TaskQueue,
        fn: Callable[P, R],
        *,
        name: str,
        queue_type: QueueType,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        broadcast: bool = False,
        max_priority: int | None = None,
        prefetch: int | None = None,
        rate_limit: str | None = None,
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = check_name(name, what="task name")
        app.topology.queue_name(self.name)  # refuses a name too long for its queue now
        #: Every live worker process serving the task runs each call once.
        self.broadcast = bool(broadcast)
        #: Highest priority a call may have; ``None``: not a priority queue.
        self.max_priority = _check_int(max_priority, name, "max_priority", 1, MAX_PRIORITY)
        #: Unsettled messages a worker takes from this task's queue; ``None``: the
        #: worker's concurrency. ``prefetch=1`` gives strict priority order.
        self.prefetch = _check_int(prefetch, name, "prefetch", 1, 65535)
        #: Starts per period across every worker, kept in the status store.
        self.rate_limit: RateLimit | None = parse_rate_limit(rate_limit, task=self.name)
        self.queue = QueueSpec(
            task=self.name,
            queue_type=check_queue_type(queue_type),
            max_priority=self.max_priority,
        )
        self.retry = retry or RetryPolicy()
        if self.broadcast:
            check_broadcast_options(self)
        self.timeout = timeout
        #: Seconds an attempt may run before it is cancelled (async) or abandoned and
        #: its worker process replaced (sync): ``timeout``, else the most the broker's
        #: ``consumer_timeout`` allows.
        self.time_limit = self._check_timeout(timeout, app.consumer_timeout)
        #: Async tasks run on the worker's event loop; sync ones in its thread pool.
        self.is_async = inspect.iscoroutinefunction(fn)
        self._validate = _argument_validator(fn)
        self._positional = [
            p.name
            for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        functools.update_wrapper(self, fn)

    def _check_timeout(self, timeout: float | None, consumer_timeout: float) -> float:
        ceiling = consumer_timeout * TIMEOUT_SHARE
        if timeout is None:
            return ceiling
        if isinstance(timeout, bool) or not isinstance(timeout, int | float):
            raise ConfigurationError(
                f"task {self.name!r}: timeout must be seconds, not {timeout!r}"
            )
        if not (math.isfinite(timeout) and timeout > 0):
            raise ConfigurationError(f"task {self.name!r}: timeout must be > 0, not {timeout!r}")
        if timeout > ceiling:
            raise ConfigurationError(
                f"task {self.name!r}: timeout={timeout:g}s is more than the broker allows: "
                f"RabbitMQ's consumer_timeout is {consumer_timeout:g}s (the app's "
                f"consumer_timeout) and a task may run at most {TIMEOUT_SHARE:.0%} of it, "
                f"{ceiling:g}s; raise consumer_timeout on the broker and the app together, "
                "or split the task"
            )
        return float(timeout)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def validate(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The arguments as the function will get them; raises :class:`InvalidArguments`."""
        try:
            return self._validate(*args, **kwargs)
        except pydantic.ValidationError as exc:
            raise InvalidArguments(
                self.name, describe_validation_error(exc, self._positional)
            ) from None
        except Exception as exc:
            # pydantic lets a validator's errors other than ValueError / AssertionError
            # through as they are: still bad input for this task, not a worker crash.
            raise InvalidArguments(self.name, f"{type(exc).__name__}: {exc}") from exc

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature of this task for a workflow (:mod:`taskq.workflows`): in a chain,
        the previous step's result is passed in front of ``args``."""
        return Signature(self.name, args, kwargs, app=self.app)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: called with ``args`` only, whatever came before."""
        return Signature(self.name, args, kwargs, immutable=True, app=self.app)

    async def delay(self, *args: P.args, **kwargs: P.kwargs) -> TaskHandle:
        """Publish a call with these arguments; returns once the broker confirmed it."""
        return await self.app.send_task(self, args, kwargs)

    async def send(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        task_id: str | None = None,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
        required: bool = True,
    ) -> TaskHandle:
        """Like :meth:`delay`, with the arguments spelled out, and options:

        ``task_id``: an idempotency key (a second send of the same id publishes nothing
        and returns the first one's handle). ``countdown`` (seconds) or ``eta`` (an
        aware datetime): run no sooner; the message waits in the broker, the task stays
        ``queued`` until then. ``priority``: 0 (the default) to the task's
        ``max_priority``, higher runs first. ``required=False``: a broadcast that no
        worker is listening to is not an error.
        """
        return await self.app.send_task(
            self,
            args,
            kwargs or {},
            task_id=task_id,
            countdown=countdown,
            eta=eta,
            priority=priority,
            required=required,
        )

    async def send_many(
        self,
        calls: Sequence[Call],
        *,
        countdown: float | None = None,
        eta: datetime | None = None,
        priority: int | None = None,
    ) -> list[TaskHandle]:
        """Send many calls at once, ``(args, kwargs)`` or ``(args, kwargs, task_id)``
        each; their handles in the order of ``calls``. Much faster than one ``send``
        after another: one store round trip for all, the broker's confirms awaited
        together. See :meth:`TaskQueue.send_many` for what is checked first and what a
        failure raises.

        >>> handles = await add.send_many([((1, 2), {}), ((3, 4), {}, "add-3-4")])
        """
        return await self.app.send_many(
            self.name, calls, countdown=countdown, eta=eta, priority=priority
        )
