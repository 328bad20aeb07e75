"""Sending on :class:`~taskq.app.TaskQueue`: by name, a registered task, many calls of
one task; the checks every send makes first (a delay, a priority) and the queue of a
task sent by a name not registered here. The messages and records themselves:
:mod:`taskq.sending` (and :mod:`taskq.broadcast` for broadcast tasks).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from taskq.broadcast import check_not_broadcast, send_broadcast
from taskq.errors import ConfigurationError
from taskq.handle import TaskHandle
from taskq.sending import Call, encode_call, encode_calls, send_many, send_one
from taskq.status import utcnow
from taskq.task import MAX_PRIORITY, Task
from taskq.topology import QueueSpec, QueueType, Topology, check_name

if TYPE_CHECKING:
    from taskq.app import TaskQueue


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


class AppSending:
    """Mixed into :class:`~taskq.app.TaskQueue`, which sets these; ``self`` is always
    that app, cast to it for the helpers that take one."""

    tasks: dict[str, Task[Any, Any]]
    topology: Topology
    queue_type: QueueType
    max_message_size: int
    _unregistered: dict[str, QueueSpec]

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
        if task.broadcast:  # to every live worker, no queue of its own: taskq.broadcast
            return await send_broadcast(
                cast("TaskQueue", self), task, args, kwargs, task_id=task_id,
                countdown=countdown, eta=eta, priority=priority, required=required,
            )  # fmt: skip
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
        check_not_broadcast(cast("TaskQueue", self), name, "send_many")
        task = self.tasks.get(name)
        if task is not None:
            spec, validate = task.queue, task.validate
        else:
            spec, validate = self._by_name(name), None
        delay = delay_of(countdown, eta)
        level = check_priority(priority, spec)
        encoded = encode_calls(spec.task, calls, validate, self.max_message_size)
        return await send_many(cast("TaskQueue", self), spec, encoded, delay, priority=level)

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
        return await send_one(cast("TaskQueue", self), spec, call, delay, priority=priority)
