"""The broadcast records of :class:`~taskq.stores.memory.MemoryStore` (see
:mod:`taskq.stores.broadcast_base`): per call, a dict of worker records, written under
the store's own lock so that the look at the call's record and the write are one step."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from taskq.message import to_json
from taskq.status import ErrorInfo, TaskState, TaskStatus, utcnow
from taskq.stores.broadcast_base import BroadcastRecords, next_worker_status


class MemoryBroadcasts(BroadcastRecords):
    """Mixed into :class:`~taskq.stores.memory.MemoryStore`, which gives ``ttl``, its
    lock and its reading of a task's record."""

    ttl: float | None
    _lock: threading.Lock
    _worker_records: dict[str, tuple[dict[str, TaskStatus], float | None]] | None = None

    def _read(self, task_id: str) -> TaskStatus | None:
        raise NotImplementedError  # MemoryStore's, which comes first in the MRO

    def _workers(self, task_id: str) -> dict[str, TaskStatus]:
        """The live worker records of a call; call with the lock held."""
        if self._worker_records is None:
            self._worker_records = {}
        found = self._worker_records.get(task_id)
        if found is None:
            return {}
        records, expires = found
        if expires is not None and expires <= time.monotonic():
            del self._worker_records[task_id]
            return {}
        return records

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
        if state is TaskState.SUCCEEDED:  # as Redis gives it back; a bad one fails here
            result = json.loads(to_json(result, what="a task result"))
        with self._lock:
            call = self._read(task_id)
            records = self._workers(task_id)
            status = next_worker_status(
                records.get(worker_id),
                task_id=task_id,
                worker_id=worker_id,
                name=name,
                state=state,
                call_cancelled=call is not None and call.state is TaskState.CANCELLED,
                now=utcnow(),
                result=result,
                error=error,
            )
            if status is None:
                return None
            records = {**records, worker_id: status}
            expires = None if self.ttl is None else time.monotonic() + self.ttl
            assert self._worker_records is not None
            self._worker_records[task_id] = (records, expires)
            return status.model_copy(deep=True)

    async def worker_statuses(self, task_id: str) -> dict[str, TaskStatus]:
        with self._lock:
            return {w: s.model_copy(deep=True) for w, s in self._workers(task_id).items()}
