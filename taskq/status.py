"""What the status store records about a task, and the only moves its state may make.

The transition table lives here, once: the memory store applies it in Python and the
Redis store ships it into its Lua script, so both enforce the same rules atomically.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict


class TaskState(StrEnum):
    """A task's place in its life; it only moves forward."""

    #: Published (or about to be: the publisher writes this before publishing).
    QUEUED = "queued"
    #: A worker took it and is running an attempt.
    STARTED = "started"
    #: An attempt failed and another is scheduled.
    RETRYING = "retrying"
    #: Ran to the end; ``result`` holds the return value. Final.
    SUCCEEDED = "succeeded"
    #: Will not run again; ``error`` says why. Final.
    FAILED = "failed"
    #: Cancelled before it started, or interrupted while it ran (async tasks). Final.
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED)


#: Allowed moves, keyed by the current state (``None``: no record yet). A worker may
#: meet a task no publisher recorded (another language's publisher, or a record removed
#: after a failed publish), so it may create ``started`` and ``failed`` records itself.
#: ``started -> started`` is a crash redelivery: a new attempt of the same task.
#: ``-> cancelled``: ``StatusStore.cancel`` from ``queued`` / ``retrying``, the worker
#: that interrupted a running async task from ``started``. A ``cancelled`` record refuses
#: every later move, the worker's ``started`` first: that refusal is the whole check a
#: cancelled task costs a worker.
TRANSITIONS: dict[TaskState | None, frozenset[TaskState]] = {
    None: frozenset({TaskState.QUEUED, TaskState.STARTED, TaskState.FAILED}),
    TaskState.QUEUED: frozenset({TaskState.STARTED, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.STARTED: frozenset(
        {
            TaskState.STARTED,
            TaskState.RETRYING,
            TaskState.SUCCEEDED,
            TaskState.FAILED,
            TaskState.CANCELLED,
        }
    ),
    TaskState.RETRYING: frozenset({TaskState.STARTED, TaskState.FAILED, TaskState.CANCELLED}),
    TaskState.SUCCEEDED: frozenset(),
    TaskState.FAILED: frozenset(),
    TaskState.CANCELLED: frozenset(),
}

#: States ``StatusStore.cancel`` moves to ``cancelled`` at once: nothing runs them now.
CANCELLABLE = frozenset({TaskState.QUEUED, TaskState.RETRYING})


def can_move(current: TaskState | None, to: TaskState) -> bool:
    return to in TRANSITIONS[current]


def utcnow() -> datetime:
    return datetime.now(UTC)


class ErrorInfo(BaseModel):
    """Why a task failed, kept in plain strings so any reader can show it."""

    model_config = ConfigDict(frozen=True)

    type: str
    message: str
    traceback: str | None = None

    @classmethod
    def from_exception(cls, exc: BaseException, traceback: str | None = None) -> ErrorInfo:
        try:
            message = str(exc)
        except Exception:  # a task's own exception class with a broken __str__
            message = "<exception str() failed>"  # what the traceback module prints
        return cls(type=type(exc).__qualname__, message=message, traceback=traceback)


class TaskStatus(BaseModel):
    """One task as the status store knows it; ``attempts`` counts every start, crash
    redeliveries included."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    state: TaskState
    attempts: int = 0
    result: Any = None
    error: ErrorInfo | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    #: A cancel was asked for while the task ran; its worker has not answered yet. A
    #: redelivery of it (its worker died) is not started: it becomes ``cancelled``.
    cancel_requested: bool = False
    #: The worker whose outcome this is, for a broadcast task's per-worker records
    #: (:mod:`taskq.broadcast`); ``None`` on every other record.
    worker: str | None = None
    #: The call's arguments, as the publisher's ``queued`` record kept them
    #: (:mod:`taskq.call_record`); ``None`` when unknown: published by another
    #: language, or too big to keep (then ``call_truncated`` is its size in bytes).
    args: list[Any] | None = None
    kwargs: dict[str, Any] | None = None
    call_truncated: int | None = None

    @property
    def finished(self) -> bool:
        return self.state.finished
