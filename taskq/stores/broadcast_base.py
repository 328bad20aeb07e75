"""What a status store keeps for broadcast tasks (:mod:`taskq.broadcast`): abstract
methods every :class:`~taskq.stores.base.StatusStore` implements (memory:
:mod:`taskq.stores.memory_broadcast`, Redis: :mod:`taskq.stores.redis_broadcast`), held
to one contract suite (``tests/contract/test_broadcast_store_contract.py``).

A broadcast call has one task id and one ordinary record, written by its sender
(``queued``: the call was sent) and moved only by a cancel (``cancelled``). Each worker
that runs the call keeps its own record under that id, keyed by its worker id, which
moves as a task's record does (:data:`taskq.status.TRANSITIONS`: attempts, result,
error and times per worker). Both live and expire together with the call's record.

The one link between them is the cancel: a worker's ``started`` (or ``retrying``) write
finds the call's record ``cancelled`` in the same atomic step and records
``cancelled`` instead, so a worker that had not started the call never does, and a
failed attempt is not retried.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from datetime import datetime
from typing import Any

from taskq.status import ErrorInfo, TaskState, TaskStatus, can_move

#: Moves a worker's record makes instead of ``started`` / ``retrying`` once the call is
#: cancelled.
CANCELS = frozenset({TaskState.STARTED, TaskState.RETRYING})


class BroadcastRecords(ABC):
    """The per-worker records of broadcast calls."""

    @abstractmethod
    async def worker_transition(
        self,
        task_id: str,
        worker_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        """Move worker ``worker_id``'s record of call ``task_id`` to ``state``, as
        :meth:`~taskq.stores.base.StatusStore.transition` moves a task's (created when
        absent and allowed; ``started`` adds an attempt; ``result`` is written with
        ``succeeded``, ``error`` with ``failed`` / ``retrying``), atomically with a look
        at the call's own record: when that is ``cancelled``, a move to ``started`` or
        ``retrying`` records ``cancelled`` instead. Returns the worker's record as
        written (its ``worker`` field set), or ``None`` when the move is refused."""

    @abstractmethod
    async def worker_statuses(self, task_id: str) -> dict[str, TaskStatus]:
        """Every worker's record of call ``task_id``, by worker id (empty when none ran
        it, or for a task that is not a broadcast)."""


def next_worker_status(
    current: TaskStatus | None,
    *,
    task_id: str,
    worker_id: str,
    name: str,
    state: TaskState,
    call_cancelled: bool,
    now: datetime,
    result: Any,
    error: ErrorInfo | None,
) -> TaskStatus | None:
    """The worker's record after the move, or ``None`` if refused: the rules of
    :meth:`BroadcastRecords.worker_transition` for a store that applies them in Python
    (the Redis store has them in Lua)."""
    if call_cancelled and state in CANCELS:
        state = TaskState.CANCELLED
        if current is None:
            return TaskStatus(
                id=task_id,
                name=name,
                state=state,
                worker=worker_id,
                created_at=now,
                finished_at=now,
            )
    if not can_move(None if current is None else current.state, state):
        return None
    if current is None:
        current = TaskStatus(id=task_id, name=name, state=state, worker=worker_id, created_at=now)
    changes: dict[str, Any] = {"state": state}
    if state is TaskState.STARTED:
        changes.update(attempts=current.attempts + 1, started_at=now)
    if state is TaskState.SUCCEEDED:
        changes.update(result=result, error=None)
    elif error is not None:
        changes["error"] = error
    if state.finished:
        changes["finished_at"] = now
    return current.model_copy(update=changes)
