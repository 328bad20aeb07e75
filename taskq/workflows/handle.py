"""Sending a workflow, and what a sender keeps of it: :class:`WorkflowHandle`."""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from taskq.broadcast import check_not_broadcast
from taskq.errors import (
    ConfigurationError,
    ResultTimeout,
    TaskCancelled,
    TaskFailed,
    UnknownTask,
)
from taskq.message import to_json
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.workflow_base import WorkflowRecord, WorkflowState
from taskq.topology import SHORT_STRING, check_name
from taskq.workflows.shape import (
    NO_INPUT,
    Node,
    Path,
    as_root,
    children,
    path_str,
    starts,
    step_id,
    steps,
)
from taskq.workflows.signature import Canvas
from taskq.workflows.steps import log, node_result, publish_steps

if TYPE_CHECKING:
    from taskq.app import TaskQueue

#: Room a workflow id leaves for the step paths after it, within a task id's limit.
MAX_WORKFLOW_ID = SHORT_STRING - 55


class StepStatus(BaseModel):
    """A node of a workflow's tree as it stands: a task step with its record, or a
    chain / group / chord with its children."""

    model_config = ConfigDict(frozen=True)

    #: Position from the root, e.g. ``"1.0"`` (``""``: the root).
    path: str
    #: ``"task"``, ``"chain"``, ``"group"`` or ``"chord"``.
    kind: str
    #: For a task step: its task id and name, and its record (``None``: not published).
    task_id: str | None = None
    name: str | None = None
    status: TaskStatus | None = None
    children: list[StepStatus] = []


class WorkflowStatus(BaseModel):
    """A workflow as the store knows it: its state, the failed step if any, every
    step's :class:`~taskq.status.TaskStatus` (``tasks``, in order) and the tree."""

    model_config = ConfigDict(frozen=True)

    id: str
    state: WorkflowState
    #: The failed step's error and task id (state ``failed``).
    error: ErrorInfo | None = None
    failed_step: str | None = None
    created_at: datetime | None = None
    finished_at: datetime | None = None
    #: Every step's record by task id, in workflow order; ``None``: not published yet.
    tasks: dict[str, TaskStatus | None]
    tree: StepStatus

    @property
    def finished(self) -> bool:
        return self.state.finished


class WorkflowHandle:
    """A workflow id with the app to look it up; ``app.workflow(workflow_id)`` makes one
    for an id kept elsewhere."""

    __slots__ = ("_app", "id")

    def __init__(self, app: TaskQueue, workflow_id: str) -> None:
        self._app = app
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkflowHandle) and (other._app, other.id) == (self._app, self.id)

    def __hash__(self) -> int:
        return hash(self.id)

    async def status(self) -> WorkflowStatus | None:
        """The workflow's state and every step's record; ``None`` for an id the store
        does not know."""
        store = self._app.store
        await store.connect()
        record = await store.get_workflow(self.id)
        if record is None or record.definition is None:
            return None
        root = record.definition
        paths = [path for path, _ in steps(root)]
        ids = [step_id(self.id, path) for path in paths]
        records = await asyncio.gather(*(store.get(task_id) for task_id in ids))
        by_id = dict(zip(ids, records, strict=True))
        return WorkflowStatus(
            id=self.id,
            state=record.state,
            error=record.error,
            failed_step=record.failed_step,
            created_at=record.created_at,
            finished_at=record.finished_at,
            tasks=by_id,
            tree=_tree(self.id, root, (), by_id),
        )

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow to finish; its result (the root's: a chain's last
        step's, a group's list). Raises :class:`~taskq.errors.TaskFailed` for the step
        that failed (``exc.status`` is that step's record),
        :class:`~taskq.errors.TaskCancelled` if it was cancelled, and
        :class:`~taskq.errors.ResultTimeout` if it has not finished in ``timeout``
        seconds (``None``: wait as long as it takes), and
        :class:`~taskq.errors.UnknownTask` for an id the store does not know."""
        store = self._app.store
        await store.connect()
        limit = math.inf if timeout is None else timeout
        deadline = time.monotonic() + limit
        interval = 0.005
        while True:
            record = await store.get_workflow(self.id, definition=False)
            if record is None:  # written before any step is published: never sent
                raise UnknownTask.for_id(self.id)
            if record.state.finished:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise ResultTimeout(self.id, limit, record)
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 1.5, 0.25)
        if record.state is WorkflowState.SUCCEEDED:
            full = await store.get_workflow(self.id)
            assert full is not None and full.definition is not None
            return await node_result(self._app, self.id, full.definition, ())
        if record.state is WorkflowState.FAILED:
            raise TaskFailed(await self._failed_step(record))
        raise TaskCancelled(task_id=self.id)

    async def _failed_step(self, record: WorkflowRecord) -> TaskStatus:
        step = record.failed_step or self.id
        found = await self._app.store.get(step)
        if found is not None and found.state is TaskState.FAILED:
            return found
        return TaskStatus(id=step, name="?", state=TaskState.FAILED, error=record.error)

    async def cancel(self) -> bool:
        """Cancel the workflow: nothing more is published, and every step that has not
        finished is cancelled as :meth:`TaskQueue.cancel` does (waiting ones for good,
        running async ones interrupted). ``True`` if it was running, ``False`` if it had
        finished already. Raises :class:`~taskq.errors.UnknownTask` for an unknown id."""
        from taskq.workflows.advance import cancel_steps

        store = self._app.store
        await store.connect()
        record = await store.get_workflow(self.id)
        if record is None or record.definition is None:
            raise UnknownTask.for_id(self.id)
        if not await store.finish_workflow(self.id, WorkflowState.CANCELLED):
            return False
        log.info("workflow cancelled", workflow_id=self.id)
        await cancel_steps(self._app, self.id, record.definition, interrupt=True)
        return True


def _tree(
    workflow_id: str, node: Node, path: Path, records: dict[str, TaskStatus | None]
) -> StepStatus:
    if node["type"] == "task":
        task_id = step_id(workflow_id, path)
        return StepStatus(
            path=path_str(path),
            kind="task",
            task_id=task_id,
            name=node["task"],
            status=records.get(task_id),
        )
    kids = [
        _tree(workflow_id, kid, (*path, index), records) for index, kid in enumerate(children(node))
    ]
    return StepStatus(path=path_str(path), kind=node["type"], children=kids)


def _check(app: TaskQueue, root: Node, workflow_id: str) -> None:
    """Refuse now what could not run: a task name that is not one, arguments JSON cannot
    carry, first steps whose arguments do not fit their registered task."""
    if not isinstance(workflow_id, str) or not workflow_id:
        raise ConfigurationError(f"a workflow id is a non-empty string, not {workflow_id!r}")
    if len(workflow_id.encode()) > MAX_WORKFLOW_ID:
        raise ConfigurationError(
            f"workflow id {workflow_id[:40]!r}... is too long: at most {MAX_WORKFLOW_ID} bytes"
        )
    to_json(root, what="a workflow's arguments")
    for _, node in steps(root):
        check_name(node["task"], what="task name")
        check_not_broadcast(app, node["task"], "a workflow step")
    for first in starts(root, (), NO_INPUT):
        task = app.tasks.get(first.node["task"])
        if task is not None:
            task.validate(first.args, first.node.get("kwargs") or {})


async def send_workflow(
    app: TaskQueue, canvas: Canvas, workflow_id: str | None = None
) -> WorkflowHandle:
    """See :meth:`TaskQueue.send_workflow`."""
    if not isinstance(canvas, Canvas):
        raise ConfigurationError(
            f"send_workflow takes a chain, group, chord or signature, not {canvas!r:.60}"
        )
    root = as_root(canvas.to_dict())
    workflow_id = str(uuid.uuid4()) if workflow_id is None else workflow_id
    _check(app, root, workflow_id)
    await app.connect()
    if not await app.store.create_workflow(workflow_id, root):
        # Sent before under this id: its own shape, its first steps published again
        # where they are missing (a send that failed half way is completed).
        record = await app.store.get_workflow(workflow_id)
        if record is None or record.definition is None or record.state.finished:
            return WorkflowHandle(app, workflow_id)
        root = record.definition
    published = await publish_steps(app, workflow_id, starts(root, (), NO_INPUT))
    log.debug("workflow sent", workflow_id=workflow_id, first_steps=len(published))
    return WorkflowHandle(app, workflow_id)
