"""The status store contract: every task's state, attempts, result and error.

Every implementation passes one contract suite (``tests/contract/test_store_contract.py``
and its siblings): :class:`~taskq.stores.memory.MemoryStore`,
:class:`~taskq.stores.redis.RedisStore` (and its Sentinel form) and
:class:`~taskq.stores.postgres.PostgresStore`.
State changes are conditional writes that follow :data:`taskq.status.TRANSITIONS`,
checked and applied atomically inside the store, so a late writer (a slow publisher's
``queued``, a second run's ``succeeded``) can never move a task backwards.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from taskq.coalesce import Coalescer
from taskq.errors import StoreError
from taskq.message import to_json
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.broadcast_base import BroadcastRecords
from taskq.stores.listing_base import TaskListing
from taskq.stores.rate_base import StartLimits
from taskq.stores.schedule_base import ScheduleRecords
from taskq.stores.workflow_base import WorkflowRecords
from taskq.stores.writes import NO_RESULT, Create, Move, Moved, Write, call_of

__all__ = ["NO_RESULT", "Create", "Move", "Moved", "Write", "call_of"]  # re-exported


#: How long records live after their last write, by default: one day.
DEFAULT_TTL = 86_400.0


@dataclass(frozen=True, slots=True)
class Migration:
    """What :meth:`StatusStore.migrate` did: ``schema`` went from version ``before`` to
    ``after`` (equal: it was up to date)."""

    schema: str
    before: int
    after: int


class StatusStore(
    WorkflowRecords, BroadcastRecords, StartLimits, ScheduleRecords, TaskListing, ABC
):
    """Where the outcome of every task is kept, so that anyone holding a task id can
    ask how it went. The workflow records (:class:`WorkflowRecords`), the broadcast
    calls' worker records (:class:`BroadcastRecords`), the rate limit schedules
    (:class:`StartLimits`), the schedules' last ticks (:class:`ScheduleRecords`) and the
    filtered listing of records (:class:`TaskListing`) are part of it."""

    #: Where the store lives, password masked: safe to log.
    display_url: str

    def __init__(self, *, ttl: float | None = DEFAULT_TTL) -> None:
        #: Seconds a record lives after its last write; ``None`` keeps it forever.
        self.ttl = ttl
        #: The polls of :meth:`wait` (see :meth:`_poll`).
        self._polls: Coalescer[None, str, TaskStatus | None] = Coalescer(
            lambda _, task_ids: self.get_many(task_ids),
            lambda _, task_id: self.get(task_id),
            in_flight=1,
            eager=True,
        )

    #: Called with each error the store raises (``taskq_store_errors_total``).
    _error_listeners: tuple[Callable[[StoreError], None], ...] = ()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_url}>"

    def on_error(self, callback: Callable[[StoreError], None]) -> None:
        """Call ``callback`` with every :class:`~taskq.errors.StoreError` this store
        raises from a failed call (a metric's count); it must not raise."""
        self._error_listeners = (*self._error_listeners, callback)

    @abstractmethod
    async def connect(self) -> None:
        """Idempotent. Raises :class:`~taskq.errors.StoreError` if unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Idempotent."""

    async def migrate(self) -> Migration | None:
        """Bring the store's schema to the version this taskq needs, ahead of any
        connect (``taskq store migrate``); ``None`` for a store that has no schema
        (memory, Redis)."""
        return None

    @abstractmethod
    async def get(self, task_id: str) -> TaskStatus | None:
        """The task's record, or ``None`` if the store has none."""

    def _poll(self, task_id: str) -> Awaitable[TaskStatus | None]:
        """:meth:`get` for a poll of :meth:`wait`. The polls of concurrent waits (two
        thousand ``result()`` calls gathered) go as one :meth:`get_many` per batch, one
        batch at a time: one at a time, each poll held a pooled connection of its own,
        and under load a poll waited out the pool's timeout (a ``StoreError`` from
        ``result()``). A poll alone runs at once, a plain :meth:`get`."""
        return self._polls(None, task_id)

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        """The records of ``task_ids``, in order (``None`` where the store has none):
        what a poller of many tasks reads (``taskq bench`` waiting for a drain). This
        default asks :meth:`get` for each, concurrently; a store whose gets are round
        trips to a server that pays for each (PostgreSQL) reads them in one."""
        return list(await asyncio.gather(*(self.get(task_id) for task_id in task_ids)))

    async def create(self, task_id: str, name: str, call: str | None = None) -> bool:
        """Write a ``queued`` record if there is no record of ``task_id``; return whether
        it was written. Atomic: of concurrent creates of one id exactly one wins, which
        makes an explicit task id an idempotency key.

        ``call``: the call's JSON (:mod:`taskq.call_record`), kept in the record. A
        create refused because a worker's ``started`` of the same task landed first
        (a generated id's record is written while its message is published) still
        fills in the call of a record of that name that has none."""
        written = await self._write(task_id, name, TaskState.QUEUED, only_if_absent=True, call=call)
        return written is not None

    async def transition(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        """Move the task to ``state`` if :func:`taskq.status.can_move` allows it from
        its current state (creating the record if absent and allowed), atomically.
        A ``started`` record marked ``cancel_requested`` (see :meth:`cancel`) asked to
        move to ``started`` (a redelivery) or ``retrying`` moves to ``cancelled``
        instead; any other move clears the mark.

        Returns the new record, or ``None`` if the move was refused (the record is
        then unchanged). Moving to ``started`` adds one to ``attempts`` and sets
        ``started_at``; to ``succeeded`` sets ``result`` (a JSON-able value) and
        clears ``error``; to ``failed`` or ``retrying`` sets ``error``; to a final
        state sets ``finished_at``. A created record gets ``created_at``.
        """
        return await self._write(task_id, name, state, result=result, error=error)

    async def create_many(self, items: Sequence[Create]) -> list[bool]:
        """:meth:`create` for each ``(task_id, name)`` or ``(task_id, name, call)``, in
        one round trip where the store has round trips (``send_many``); whether each
        record was written, in order."""
        writes = [
            Write(
                item[0],
                item[1],
                TaskState.QUEUED,
                only_if_absent=True,
                call=item[2] if len(item) == 3 else None,
            )
            for item in items
        ]
        return [status is not None for status in await self.write_many(writes)]

    async def write_many(self, writes: Sequence[Write]) -> list[TaskStatus | None]:
        """Each write as :meth:`transition` / :meth:`create` makes it, in order, each
        atomic on its own (not all-or-nothing); the records as written, ``None`` where
        refused. Why: a worker finishing a hundred tasks at once, or ``send_many``,
        pays one round trip instead of a hundred (Redis: one pipeline). If the store
        fails, the error is raised and any of the writes may or may not have landed,
        exactly as for a single write whose answer was lost.

        A result that JSON cannot carry raises :class:`~taskq.errors.SerializationError`
        before anything is written.

        This default writes one after another; a store with round trips overrides it."""
        for w in writes:
            if w.result is not NO_RESULT:
                to_json(w.result, what="a task result")
        return [
            await self._write(
                w.task_id,
                w.name,
                w.state,
                only_if_absent=w.only_if_absent,
                result=w.result,
                error=w.error,
                call=w.call,
            )
            for w in writes
        ]

    async def move_many(self, writes: Sequence[Write]) -> Sequence[Moved | None]:
        """:meth:`write_many` for a caller that reads only each record's state and
        attempts (a worker's moves with no observer on): a store may answer without
        building whole records (Redis: a record validated is ~3 µs of a worker's CPU,
        twice a task). This default answers the records."""
        return await self.write_many(writes)

    @abstractmethod
    async def _write(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        only_if_absent: bool = False,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
        call: str | None = None,
    ) -> TaskStatus | None:
        """The one conditional write behind :meth:`create` and :meth:`transition`:
        check the move (and, with ``only_if_absent``, that no record exists) and apply
        it, atomically. Returns the record as written, or ``None`` if refused. ``call``
        goes into a record it creates, or (a refused create) fills in the call of an
        existing record of ``name`` that has none."""

    @abstractmethod
    async def cancel(self, task_id: str) -> TaskStatus | None:
        """Cancel the task as far as the store can, atomically, and return its record
        as it is then (``None``: no record of ``task_id``):

        - ``queued`` or ``retrying`` (waiting in a queue or a delay level): moved to
          ``cancelled``, final; the worker's ``started`` is refused when its message
          arrives, so it never runs, on any worker, after any restart.
        - ``started``: marked ``cancel_requested``; the caller then asks the workers to
          interrupt it. Until a worker answers, a redelivery of it (its worker died)
          or a retry of it becomes ``cancelled`` instead of a new attempt.
        - finished (``succeeded``, ``failed``, ``cancelled``): unchanged."""

    @abstractmethod
    async def refuse_cancel(self, task_id: str) -> bool:
        """Clear ``cancel_requested``: the worker running the task cannot interrupt it
        (a sync task runs to its end and keeps its real outcome, retries included).
        Returns whether the mark was there."""

    @abstractmethod
    async def discard(self, task_id: str) -> bool:
        """Delete the record only while it is ``queued`` with no attempt (a publish
        that failed); return whether it was deleted."""

    @abstractmethod
    async def reset(self, task_id: str, name: str) -> TaskStatus:
        """Put the task back to ``queued`` named ``name``, with no attempt, result,
        error, start or finish, whatever its state (creating the record if there is
        none; ``created_at`` and the call's arguments are kept), atomically; return the
        record.

        Not a move of :data:`~taskq.status.TRANSITIONS`, which never leaves a final
        state: an operator's decision to run a task again, taken just before its dead
        letter is published back. Without it the worker would refuse the rerun of a
        ``failed`` task ("task already failed") and dead-letter it again."""

    @abstractmethod
    async def recent(
        self, *, name: str | None = None, state: TaskState | None = None, limit: int = 20
    ) -> list[TaskStatus]:
        """Up to ``limit`` records, most recently written first, of task ``name`` and in
        ``state`` where given: what an operator asks after an incident
        (``taskq status --task emails.send --state failed``). Expired records are not
        listed. A store may look only at its latest writes (Redis: the last
        :data:`~taskq.stores.redis.RECENT_INDEX_SIZE`)."""

    async def wait(self, task_id: str, timeout: float) -> TaskStatus | None:
        """Wait until the task is finished or ``timeout`` seconds passed; return the
        last record seen (``None`` if none). This default polls :meth:`get` with a
        growing interval; a store that can be notified overrides it."""
        deadline = time.monotonic() + timeout
        interval = 0.005
        while True:
            status = await self._poll(task_id)
            if status is not None and status.finished:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                return status
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 1.5, 0.25)
