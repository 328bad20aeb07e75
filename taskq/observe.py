"""Watching a worker's runs: the one hook that metrics (:mod:`taskq.metrics`) and traces
(:mod:`taskq.tracing`) share.

A :class:`~taskq.execution.TaskRunner` holds ``observer``, ``None`` unless one of them
is on, so a worker without them pays one ``is None`` test per message and nothing else.
An observer sees two things:

- :meth:`RunObserver.run` wraps the handling of each delivery, from its bytes to its
  outcome (settled by the caller afterwards): a span is opened around it, the time a
  task runs is measured inside it;
- :meth:`RunObserver.recorded` is told of every state the runner records in the status
  store (``started``, ``retrying``, ``succeeded``, ``failed``, ``cancelled``), with the
  record as the store answered, right after the write: the one place per transition, the
  one that also decides what the task's lifecycle events say.

Both are called in the runner's own task, so an observer keeps what belongs to the run
in a context variable.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from taskq.stores.base import NO_RESULT

if TYPE_CHECKING:
    from taskq.brokers.base import Delivery
    from taskq.settle import Outcome
    from taskq.status import ErrorInfo, TaskState, TaskStatus
    from taskq.stores.batch import WriteBatcher

#: Handles a delivery: its outcome and the logger bound to its task.
RunCall = Callable[["Delivery"], Awaitable[tuple["Outcome", Any]]]


class RunObserver:
    """Base of what watches runs; both hooks do nothing by default."""

    async def run(self, delivery: Delivery, call: RunCall) -> tuple[Outcome, Any]:
        """Handle ``delivery`` with ``call``, around which the observer does its work."""
        return await call(delivery)

    def recorded(
        self, state: TaskState, record: TaskStatus | None, error: ErrorInfo | None
    ) -> None:
        """``state`` was asked of the store for the running delivery's task; ``record``
        is what the store answered (``None``: refused, the task had finished)."""


class Observers(RunObserver):
    """Several observers as one: the first one's :meth:`run` wraps the second's, and so
    on, so a span is open while the metrics measure."""

    def __init__(self, observers: Sequence[RunObserver]) -> None:
        self.observers = tuple(observers)

    async def run(self, delivery: Delivery, call: RunCall) -> tuple[Outcome, Any]:
        for observer in reversed(self.observers[1:]):
            call = _wrapped(observer, call)
        return await self.observers[0].run(delivery, call)

    def recorded(
        self, state: TaskState, record: TaskStatus | None, error: ErrorInfo | None
    ) -> None:
        for observer in self.observers:
            observer.recorded(state, record, error)


def _wrapped(observer: RunObserver, call: RunCall) -> RunCall:
    async def run(delivery: Delivery) -> tuple[Outcome, Any]:
        return await observer.run(delivery, call)

    return run


def combine(*observers: RunObserver | None) -> RunObserver | None:
    """The observers that are on, as one; ``None`` when none is."""
    on = [observer for observer in observers if observer is not None]
    if not on:
        return None
    return on[0] if len(on) == 1 else Observers(on)


class ObservedWrites:
    """A :class:`~taskq.stores.batch.WriteBatcher` whose every recorded transition is
    also told to an observer. Used only when one is on."""

    def __init__(self, writes: WriteBatcher, observer: RunObserver) -> None:
        self.writes = writes
        self.observer = observer

    async def transition(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        # Made with records=True (TaskRunner): whole records, for the observer.
        record = cast(
            "TaskStatus | None",
            await self.writes.transition(task_id, name, state, result=result, error=error),
        )
        self.observer.recorded(state, record, error)
        return record
