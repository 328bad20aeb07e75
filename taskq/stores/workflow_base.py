"""What a status store keeps for workflows (chain, group, chord): the store half of
:mod:`taskq.workflows`, abstract methods every :class:`~taskq.stores.base.StatusStore`
implements (memory: :mod:`taskq.stores.memory_workflows`, Redis:
:mod:`taskq.stores.redis_workflows`), held to one contract suite
(``tests/contract/test_workflow_store_contract.py``).

Three things, each one atomic write:

- the **workflow record**, written once at send: the workflow's shape (its definition,
  plain JSON) and its state, which only moves from ``running`` to a final state, first
  writer wins. Workers read the state before they publish a next step, so a failed or
  cancelled workflow publishes nothing more.
- the **join** of a group: each member's completion is added to a set of member
  indexes (a member delivered twice is counted once: never a bare increment, which a
  redelivery would count twice), and when the set is full the fire is claimed once
  (``SET NX``) *by that member*. The claim names its member, so a redelivery of the
  member that claimed it fires again (repairing a crash between the claim and the
  publish: the callback's id is deterministic, the repeat publishes nothing new) while
  every other member sees the fire taken.
- nothing else: results stay in the member task records, read in member order when the
  group fires, never gathered into one value rewritten per member.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from taskq.status import ErrorInfo


class WorkflowState(StrEnum):
    """A workflow's place in its life; it leaves ``running`` once, for good."""

    #: Sent; some step has not finished yet.
    RUNNING = "running"
    #: Every step succeeded; the result is the root's (read from the steps' records).
    SUCCEEDED = "succeeded"
    #: A step failed for good (after its retries): nothing later is published.
    FAILED = "failed"
    #: Cancelled (``wf.cancel()``, or one of its steps was cancelled).
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self is not WorkflowState.RUNNING


@dataclass(frozen=True, slots=True)
class WorkflowRecord:
    """A workflow as the store keeps it."""

    id: str
    state: WorkflowState
    #: The shape as sent (:meth:`taskq.workflows.canvas.Canvas.to_dict`); ``None`` when
    #: not asked for (a state check on a worker's hot path).
    definition: dict[str, Any] | None
    #: The error of the step that failed it, with that step's task id.
    error: ErrorInfo | None = None
    failed_step: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None


class WorkflowRecords(ABC):
    """The workflow operations of a status store. Records and join sets live as long
    as task records: ``ttl`` seconds after their last write."""

    @abstractmethod
    async def create_workflow(self, workflow_id: str, definition: dict[str, Any]) -> bool:
        """Write a ``running`` record holding ``definition`` unless one exists; whether
        it was written (an explicit workflow id is an idempotency key)."""

    @abstractmethod
    async def get_workflow(
        self, workflow_id: str, *, definition: bool = True
    ) -> WorkflowRecord | None:
        """The record, or ``None``; without ``definition`` the shape is not read (the
        state check a worker makes before it publishes a next step)."""

    async def finish_workflow(
        self,
        workflow_id: str,
        state: WorkflowState,
        *,
        error: ErrorInfo | None = None,
        failed_step: str | None = None,
    ) -> bool:
        """Move a ``running`` record to the final ``state`` (with the failed step's
        error and id); whether it moved. Atomic: the first final state wins, a missing
        or finished record is left as it is."""
        if not state.finished:
            raise ValueError(f"finish_workflow moves to a final state, not {state.value!r}")
        return await self._finish_workflow(workflow_id, state, error=error, failed_step=failed_step)

    @abstractmethod
    async def _finish_workflow(
        self,
        workflow_id: str,
        state: WorkflowState,
        *,
        error: ErrorInfo | None,
        failed_step: str | None,
    ) -> bool:
        """:meth:`finish_workflow` in this store, ``state`` checked final."""

    @abstractmethod
    async def join_member(self, workflow_id: str, group: str, member: int, size: int) -> bool:
        """Count ``member`` (``0 .. size - 1``) of the group at path ``group`` as done, at
        most once however often it is asked; return ``True`` when the group is then
        complete and the fire is claimed by this member: the first member to see it
        complete, and that same member again on any later call (its redelivery repeats
        the fire, which is idempotent). Every other member gets ``False``."""
