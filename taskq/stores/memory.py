"""An in-process status store, for tests and single-process use.

It keeps the same promises as the Redis store: moves follow
:data:`taskq.status.TRANSITIONS`, results go through JSON (so what comes back is what
Redis would give back, and a caller mutating it cannot change the record), and
records expire ``ttl`` seconds after their last write.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from taskq.call_record import NO_ARGUMENTS, Arguments, read_call
from taskq.message import to_json
from taskq.status import CANCELLABLE, ErrorInfo, TaskState, TaskStatus, can_move, utcnow
from taskq.stores.base import DEFAULT_TTL, NO_RESULT, StatusStore
from taskq.stores.memory_broadcast import MemoryBroadcasts
from taskq.stores.memory_listing import MemoryListing
from taskq.stores.memory_rate import MemoryStartLimits
from taskq.stores.memory_schedules import MemorySchedules
from taskq.stores.memory_workflows import MemoryWorkflows
from taskq.urls import MEMORY_URL


@dataclass(frozen=True)
class _Record:
    status: TaskStatus
    #: ``time.monotonic()`` after which the record is gone; ``None``: never.
    expires_at: float | None


class MemoryStore(
    MemoryWorkflows,
    MemoryBroadcasts,
    MemoryStartLimits,
    MemorySchedules,
    MemoryListing,
    StatusStore,
):
    """Records in a dict. Safe to share between event loops and threads: the writes
    run under a lock and :meth:`wait` is woken through each waiter's own loop."""

    display_url = MEMORY_URL

    def __init__(self, *, ttl: float | None = DEFAULT_TTL) -> None:
        super().__init__(ttl=ttl)
        # Every write re-inserts its record at the end, so with one ttl for all records
        # the dict is ordered by expiry and _purge only ever looks at its head.
        self._records: dict[str, _Record] = {}
        # A threading lock, not an asyncio one: it is never held across an await, and
        # it keeps check-then-write atomic even when two loops in two threads write.
        self._lock = threading.Lock()
        # Futures of wait() calls, each bound to the loop that made it.
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    async def connect(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def get(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            return self._read(task_id)

    async def discard(self, task_id: str) -> bool:
        with self._lock:
            status = self._read(task_id)
            if status is None or status.state is not TaskState.QUEUED or status.attempts:
                return False
            del self._records[task_id]
            return True

    async def recent(
        self, *, name: str | None = None, state: TaskState | None = None, limit: int = 20
    ) -> list[TaskStatus]:
        found: list[TaskStatus] = []
        with self._lock:
            self._purge()
            # Each write re-inserts its record at the end: newest last.
            for record in reversed(self._records.values()):
                if len(found) >= limit:
                    break
                status = record.status
                if (name is None or status.name == name) and (
                    state is None or status.state == state
                ):
                    found.append(status.model_copy(deep=True))
        return found

    async def wait(self, task_id: str, timeout: float) -> TaskStatus | None:
        """Sleep until a write to ``task_id`` wakes us, instead of polling.

        The future is registered *before* reading, so a write landing between the
        read and the await still wakes it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            woken: asyncio.Future[None] = loop.create_future()
            with self._lock:
                self._waiters.setdefault(task_id, set()).add(woken)
                status = self._read(task_id)
            try:
                left = deadline - loop.time()
                if (status is not None and status.finished) or left <= 0:
                    return status
                await asyncio.wait([woken], timeout=left)
            finally:
                with self._lock:
                    waiting = self._waiters.get(task_id)
                    if waiting is not None:
                        waiting.discard(woken)
                        if not waiting:
                            del self._waiters[task_id]

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
        # Encode before taking the lock: a bad result must fail the call, not the record.
        decoded = NO_RESULT if result is NO_RESULT else _json_copy(result)
        # Read back from its JSON, as the Redis store would give it back.
        arguments = read_call(call)
        now = utcnow()
        with self._lock:
            current = self._read(task_id)
            if current is not None and only_if_absent:
                if arguments != NO_ARGUMENTS and current.name == name and _no_call(current):
                    self._keep(current.model_copy(update=arguments.as_fields()))
                return None
            if not can_move(current.state if current else None, state):
                return None
            if current is None:
                current = TaskStatus(
                    id=task_id, name=name, state=state, created_at=now, **arguments.as_fields()
                )
            if current.cancel_requested and state in (TaskState.STARTED, TaskState.RETRYING):
                state = TaskState.CANCELLED  # see StatusStore.transition
            changes: dict[str, Any] = {"state": state}
            if state is not TaskState.STARTED:
                changes["cancel_requested"] = False
            if state is TaskState.STARTED:
                changes.update(attempts=current.attempts + 1, started_at=now)
            if decoded is not NO_RESULT:
                changes["result"] = decoded
            if state is TaskState.SUCCEEDED:
                changes["error"] = None
            elif error is not None:
                changes["error"] = error
            if state.finished:
                changes["finished_at"] = now
            return self._keep(current.model_copy(update=changes))

    async def cancel(self, task_id: str) -> TaskStatus | None:
        with self._lock:
            current = self._read(task_id)
            if current is None:
                return None
            if current.state in CANCELLABLE:
                update = {"state": TaskState.CANCELLED, "finished_at": utcnow()}
            elif current.state is TaskState.STARTED:
                update = {"cancel_requested": True}
            else:
                return current
            return self._keep(current.model_copy(update=update))

    async def refuse_cancel(self, task_id: str) -> bool:
        with self._lock:
            current = self._read(task_id)
            if current is None or not current.cancel_requested:
                return False
            self._keep(current.model_copy(update={"cancel_requested": False}))
            return True

    async def reset(self, task_id: str, name: str) -> TaskStatus:
        now = utcnow()
        with self._lock:
            current = self._read(task_id)
            created_at = current.created_at if current is not None else None
            kept = (
                Arguments(current.args, current.kwargs, current.call_truncated)
                if current is not None
                else NO_ARGUMENTS
            )
            status = TaskStatus(
                id=task_id,
                name=name,
                state=TaskState.QUEUED,
                created_at=created_at or now,
                **kept.as_fields(),
            )
            return self._keep(status)

    def _keep(self, status: TaskStatus) -> TaskStatus:
        """Write ``status`` as the record of its task, last in expiry order, and wake
        its waiters; returns a copy. Call with the lock held."""
        expires_at = None if self.ttl is None else time.monotonic() + self.ttl
        self._records.pop(status.id, None)
        self._records[status.id] = _Record(status, expires_at)
        self._wake(status.id)
        return status.model_copy(deep=True)

    def _read(self, task_id: str) -> TaskStatus | None:
        """The live record, a copy; call with the lock held."""
        self._purge()
        record = self._records.get(task_id)
        if record is None or _expired(record, time.monotonic()):
            return None
        return record.status.model_copy(deep=True)

    def _purge(self) -> None:
        """Drop expired records. Lazy, on each access, and cheap: the dict is in expiry
        order, so this stops at the first live record."""
        now = time.monotonic()
        expired = []
        for task_id, record in self._records.items():
            if not _expired(record, now):
                break
            expired.append(task_id)
        for task_id in expired:
            del self._records[task_id]

    def _wake(self, task_id: str) -> None:
        """Wake every wait() on ``task_id``, each through its own loop, which may run
        in another thread; call with the lock held, after the write."""
        for future in self._waiters.pop(task_id, set()):
            try:
                future.get_loop().call_soon_threadsafe(_resolve, future)
            except RuntimeError:  # that loop is closed: nobody is waiting there any more
                pass


def _no_call(status: TaskStatus) -> bool:
    return status.args is None and status.call_truncated is None


def _expired(record: _Record, now: float) -> bool:
    return record.expires_at is not None and record.expires_at <= now


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _json_copy(value: Any) -> Any:
    """The value as it comes back from JSON, as the Redis store would return it."""
    return json.loads(to_json(value, what="a task result"))
