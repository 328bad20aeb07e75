"""The errors taskq raises, one tree rooted at :class:`TaskqError`.

    TaskqError
    ├── ConfigurationError       a bad URL, task name or option; raised where it is written
    ├── SerializationError       arguments or a result that cannot become JSON
    ├── MessageTooLarge          a task message over the app's ``max_message_size``
    ├── InvalidArguments         arguments that do not fit the task's signature
    ├── UnknownTask              no task of that name is registered here (or of that id)
    ├── BrokerError
    │   ├── BrokerConnectionError    the broker cannot be reached (or refused the login)
    │   ├── PublishError             a publish that the broker did not confirm
    │   │   └── BulkPublishError         some calls of a ``send_many`` were not confirmed
    │   └── QueueMismatch            a queue exists with other arguments than ours (406)
    ├── StoreError               the status store cannot be reached or answered badly
    ├── MalformedMessage         a delivery that cannot run (worker side, dead-lettered)
    ├── TaskFailed               the task ran and failed; ``.status`` says how
    ├── TaskCancelled            the task was cancelled; ``.status`` says when
    ├── TaskTimeout              also a :class:`TimeoutError`: an attempt ran past its limit
    └── ResultTimeout            also a :class:`TimeoutError`: no outcome in time

Errors of aio-pika, aiormq and redis never reach users: each driver translates its
errors at one boundary (``raise ... from exc``) into these.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskq.handle import TaskHandle
    from taskq.status import TaskStatus


class TaskqError(Exception):
    """Base of every error taskq raises on purpose."""


class ConfigurationError(TaskqError):
    """Something written in code or settings cannot work; the message says how to fix it."""


class SerializationError(TaskqError, TypeError):
    """A value that JSON cannot carry; raised before anything is published."""


class MessageTooLarge(TaskqError, ValueError):
    """A task message bigger than the app's ``max_message_size``; raised before
    anything is written or published. Pass a reference (a URL, a row id) instead."""

    def __init__(self, size: int, limit: int, task: str) -> None:
        super().__init__(
            f"the message of task {task!r} is {size} bytes; the limit is {limit} "
            "(max_message_size): pass a reference to large data, not the data"
        )
        self.size = size
        self.limit = limit


class InvalidArguments(TaskqError, ValueError):
    """Arguments that do not validate against the task's signature."""

    def __init__(self, task: str, detail: str) -> None:
        super().__init__(f"invalid arguments for task {task!r}: {detail}")
        self.task = task
        self.detail = detail


class UnknownTask(TaskqError, LookupError):
    """No task of this name is registered on this app."""

    def __init__(self, task: str, message: str | None = None) -> None:
        super().__init__(message or f"no task named {task!r} is registered")
        self.task = task

    @classmethod
    def for_id(cls, task_id: str) -> UnknownTask:
        """No task with this id in the status store (never sent, or expired)."""
        return cls(
            task_id, f"no task with id {task_id!r} in the status store (unknown, or expired)"
        )


class BrokerError(TaskqError):
    """The broker failed us; the subclasses say how."""


class BrokerConnectionError(BrokerError, ConnectionError):
    """The broker cannot be reached. The URL in the message has its password masked."""


class PublishError(BrokerError):
    """The broker did not confirm a publish: it was returned (unroutable), nacked, timed
    out, or its connection was lost before the confirm. The message may or may not have
    been taken; re-sending with the same task id is safe."""

    def __init__(self, message: str, *, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


class BulkPublishError(PublishError):
    """Some calls of a ``send_many`` were not confirmed. ``confirmed`` holds the handles
    of those that were (they will run); ``not_confirmed`` the task ids of the others, in
    call order, with ``errors`` the error of each. Their ``queued`` records are gone, so
    sending those calls again with the same task ids is safe: the confirmed ones, if
    sent again with their ids, are recognised and not published twice."""

    #: How many ids the message lists before "...".
    SHOWN = 5

    def __init__(
        self,
        task: str,
        *,
        confirmed: list[TaskHandle],
        not_confirmed: list[str],
        errors: list[BaseException],
    ) -> None:
        shown = ", ".join(not_confirmed[: self.SHOWN])
        more = ", ..." if len(not_confirmed) > self.SHOWN else ""
        first = f": {errors[0]}" if errors else ""
        super().__init__(
            f"{len(not_confirmed)} of {len(not_confirmed) + len(confirmed)} calls of task "
            f"{task!r} were not confirmed ({shown}{more}){first}",
            task_id=not_confirmed[0] if not_confirmed else None,
        )
        self.task = task
        self.confirmed = confirmed
        self.not_confirmed = not_confirmed
        self.errors = errors


class QueueMismatch(BrokerError):
    """A queue exists with arguments other than the ones taskq declares (AMQP 406
    PRECONDITION_FAILED). Delete the queue or make the task's options match."""

    def __init__(self, queue: str, detail: str) -> None:
        # A queue's type and priority levels are fixed when it is created: no redeclare
        # can change them (making an existing task a priority task hits this), so the
        # message says how to get out.
        super().__init__(
            f"queue {queue!r} exists with different arguments: {detail}. A queue's "
            "arguments (queue_type, max_priority) are fixed when it is created: drain and "
            f"delete it (e.g. `rabbitmqctl delete_queue {queue}`) so that taskq declares "
            "it again, or make the task's options match the existing queue"
        )
        self.queue = queue
        self.detail = detail


class StoreError(TaskqError):
    """The status store cannot be reached or gave an answer we cannot read."""


class MalformedMessage(TaskqError):
    """A delivery that cannot run; ``reason`` goes into the dead letter's header."""

    def __init__(self, reason: str, *, task_id: str | None = None, task: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.task_id = task_id
        self.task = task


class TaskFailed(TaskqError):
    """The task ran and failed; ``status.error`` holds the type, message and traceback."""

    def __init__(self, status: TaskStatus) -> None:
        err = status.error
        what = f"{err.type}: {err.message}" if err else "no error recorded"
        super().__init__(f"task {status.name} [{status.id}] failed: {what}")
        self.status = status


class TaskCancelled(TaskqError):
    """The task was cancelled (``app.cancel``): before it started, or interrupted while
    it ran. Raised by ``handle.result()``; inside a worker, it is how an interrupted
    async task ends (never retried)."""

    def __init__(self, status: TaskStatus | None = None, *, task_id: str | None = None) -> None:
        task_id = status.id if status is not None else task_id
        name = f"{status.name} " if status is not None else ""
        super().__init__(f"task {name}[{task_id}] was cancelled")
        self.status = status
        self.task_id = task_id


class TaskTimeout(TaskqError, TimeoutError):
    """An attempt ran past its task's ``timeout``: recorded as the attempt's error,
    retried or failed by the task's retry policy."""

    def __init__(self, task: str, timeout: float) -> None:
        super().__init__(f"task {task!r} ran past its time limit of {timeout:g}s")
        self.task = task
        self.timeout = timeout


class ResultTimeout(TaskqError, TimeoutError):
    """The task had no outcome within the time given to ``result()``."""

    def __init__(self, task_id: str, timeout: float, last: Any = None) -> None:
        state = getattr(last, "state", None)
        super().__init__(
            f"task {task_id} did not finish within {timeout:g}s (state: {state or 'unknown'})"
        )
        self.task_id = task_id
        self.timeout = timeout
