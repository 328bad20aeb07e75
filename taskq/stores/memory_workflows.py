"""The workflow records of :class:`~taskq.stores.memory.MemoryStore` (see
:mod:`taskq.stores.workflow_base`): dicts under one lock, expiring like task records."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from taskq.message import to_json
from taskq.status import ErrorInfo, utcnow
from taskq.stores.workflow_base import WorkflowRecord, WorkflowRecords, WorkflowState

_CREATING = threading.Lock()


@dataclass
class _Join:
    members: set[int] = field(default_factory=set)
    #: The member that claimed the fire; ``None`` while the group is not complete.
    fired_by: int | None = None


@dataclass
class _Workflows:
    lock: threading.Lock = field(default_factory=threading.Lock)
    records: dict[str, tuple[WorkflowRecord, float | None]] = field(default_factory=dict)
    joins: dict[tuple[str, str], tuple[_Join, float | None]] = field(default_factory=dict)


class MemoryWorkflows(WorkflowRecords):
    """Mixed into :class:`~taskq.stores.memory.MemoryStore`, which gives ``ttl``."""

    ttl: float | None
    _workflow_state: _Workflows | None = None

    @property
    def _wf(self) -> _Workflows:
        if self._workflow_state is None:
            with _CREATING:  # two threads' first calls must share one state
                if self._workflow_state is None:
                    self._workflow_state = _Workflows()
        return self._workflow_state

    def _wf_expiry(self) -> float | None:
        return None if self.ttl is None else time.monotonic() + self.ttl

    def _wf_record(self, workflow_id: str) -> WorkflowRecord | None:
        found = self._wf.records.get(workflow_id)
        if found is None:
            return None
        record, expires = found
        if expires is not None and expires <= time.monotonic():
            del self._wf.records[workflow_id]
            return None
        return record

    async def create_workflow(self, workflow_id: str, definition: dict[str, Any]) -> bool:
        # Through JSON, as Redis keeps it: a caller mutating its dict changes nothing.
        stored = json.loads(to_json(definition, what="a workflow definition"))
        with self._wf.lock:
            if self._wf_record(workflow_id) is not None:
                return False
            record = WorkflowRecord(workflow_id, WorkflowState.RUNNING, stored, created_at=utcnow())
            self._wf.records[workflow_id] = (record, self._wf_expiry())
            return True

    async def get_workflow(
        self, workflow_id: str, *, definition: bool = True
    ) -> WorkflowRecord | None:
        with self._wf.lock:
            record = self._wf_record(workflow_id)
        if record is None:
            return None
        if not definition:
            return replace(record, definition=None)
        return replace(record, definition=json.loads(json.dumps(record.definition)))

    async def _finish_workflow(
        self,
        workflow_id: str,
        state: WorkflowState,
        *,
        error: ErrorInfo | None,
        failed_step: str | None,
    ) -> bool:
        with self._wf.lock:
            record = self._wf_record(workflow_id)
            if record is None or record.state.finished:
                return False
            done = replace(
                record, state=state, error=error, failed_step=failed_step, finished_at=utcnow()
            )
            self._wf.records[workflow_id] = (done, self._wf_expiry())
            return True

    async def join_member(self, workflow_id: str, group: str, member: int, size: int) -> bool:
        key = (workflow_id, group)
        with self._wf.lock:
            found = self._wf.joins.get(key)
            if found is None or (found[1] is not None and found[1] <= time.monotonic()):
                join = _Join()
            else:
                join = found[0]
            join.members.add(member)
            if len(join.members) >= size and join.fired_by is None:
                join.fired_by = member
            self._wf.joins[key] = (join, self._wf_expiry())
            return join.fired_by == member
