"""What a worker does after a workflow step's outcome is recorded, before its message
is settled (acked or dead-lettered).

The contract (README, "Workflows"): the worker that finished a step publishes what
follows, after the step's outcome is recorded and before its message is acked, under
deterministic ids. A crash between the two redelivers the step; its ``started`` write
is then refused (the step is finished) and the runner comes here again, so only the
publishes repeat, and :func:`~taskq.workflows.steps.publish_task` makes the repeat a
no-op. So this reads the outcome from the store, never from the run that just ended:
the first delivery and any redelivery take the same path.

- ``succeeded``: the next step of the enclosing chain (or chord) is published with
  this step's result; at the end of a chain, its parent goes on; a group member is
  counted in the group's join (:meth:`StatusStore.join_member`), and the member that
  completes it fires what follows the group, with the members' results read from their
  records in member order. At the root, the workflow is recorded ``succeeded``.
- ``failed`` (for good, after its retries): the workflow is recorded ``failed`` with
  this step's error, and the ``link_error`` signatures of the enclosing chains and
  chords are published (each once, under ``<workflow id>.<path>.error``), called with
  the failed step's task id. Nothing after the step is ever published.
- ``cancelled``: the workflow is recorded ``cancelled`` and its other steps are
  cancelled in the store (running async ones are told to stop).

Before publishing, the workflow's state is read: a failed or cancelled workflow
publishes nothing more. After publishing it is read again, and the new steps are
cancelled if the workflow finished meanwhile (a cancel that swept the steps between
the two reads has seen their records, written before the second read).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from taskq.cancel import encode_cancel
from taskq.errors import BrokerError, StoreError, UnknownTask
from taskq.logs import get_logger
from taskq.settle import Outcome, Settlement
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.workflow_base import WorkflowState
from taskq.workflows.shape import (
    Node,
    Path,
    ancestors,
    call_args,
    children,
    errback_id,
    in_sequence,
    node_at,
    parse_path,
    path_str,
    starts,
    step_id,
    steps,
)
from taskq.workflows.steps import StepNotDone, node_result, publish_steps, publish_task

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.message import TaskMessage

#: Workflow shapes a worker keeps (they never change once sent), so a chord's members
#: read the shape once per process, then only the workflow's state.
SHAPES_KEPT = 256
#: Pause before requeueing a step whose follow-up could not be published.
RETRY_PAUSE = 1.0

#: A node's result not read yet (a group's, read from its members when needed).
_UNREAD: Any = object()


class WorkflowSteps:
    """One per :class:`~taskq.execution.TaskRunner`."""

    def __init__(self, app: TaskQueue) -> None:
        self.app = app
        self.store = app.store
        self._shapes: OrderedDict[str, Node] = OrderedDict()

    async def after(self, message: TaskMessage, outcome: Outcome, log: Any) -> Outcome:
        """Advance the workflow of ``message``'s step; the outcome to settle it with
        (a requeue if the store or the broker failed: the redelivery tries again)."""
        if outcome.settlement is Settlement.REQUEUE or message.workflow is None:
            return outcome
        workflow_id = message.workflow["id"]
        log = log.bind(workflow_id=workflow_id)
        try:
            path = parse_path(message.workflow["path"])
            await self._advance(workflow_id, path, message.id, log)
        except (StoreError, BrokerError) as exc:
            log.error("could not advance the workflow; requeueing the step", error=str(exc))
            await asyncio.sleep(RETRY_PAUSE)
            return Outcome.requeue("workflow not advanced")
        except (ValueError, KeyError, IndexError, TypeError, StepNotDone) as exc:
            # A step that does not fit its workflow's shape: nothing to publish, and
            # trying again would not change that.
            log.error("step does not fit its workflow; not advanced", error=repr(exc))
        return outcome

    async def _advance(self, workflow_id: str, path: Path, task_id: str, log: Any) -> None:
        status = await self.store.get(task_id)
        if status is None or not status.state.finished:
            return  # retrying: the next attempt advances it
        shape = self._shapes.get(workflow_id)
        record = await self.store.get_workflow(workflow_id, definition=shape is None)
        if record is None:
            log.warning("workflow record not found (expired?); nothing published after the step")
            return
        if shape is None:
            assert record.definition is not None
            shape = self._keep(workflow_id, record.definition)
        else:
            self._shapes.move_to_end(workflow_id)
        if status.state is TaskState.SUCCEEDED:
            if record.state is WorkflowState.RUNNING:
                await self._succeeded(workflow_id, shape, path, status.result, log)
        elif status.state is TaskState.FAILED:
            await self._failed(workflow_id, shape, path, status, record.state, log)
        else:
            await self._cancelled(workflow_id, shape, log)

    def _keep(self, workflow_id: str, shape: Node) -> Node:
        self._shapes[workflow_id] = shape
        while len(self._shapes) > SHAPES_KEPT:
            self._shapes.popitem(last=False)
        return shape

    async def _succeeded(
        self, workflow_id: str, root: Node, path: Path, result: Any, log: Any
    ) -> None:
        """Walk up from the finished node to what starts next."""
        while path:
            parent_path, index = path[:-1], path[-1]
            parent = node_at(root, parent_path)
            kids = children(parent)
            if in_sequence(parent):
                if index + 1 < len(kids):
                    if result is _UNREAD:
                        result = await node_result(self.app, workflow_id, root, path)
                    following = starts(kids[index + 1], (*parent_path, index + 1), result)
                    await self._publish(workflow_id, following, log)
                    return
            elif not await self.store.join_member(
                workflow_id, path_str(parent_path), index, len(kids)
            ):
                return  # the group is not complete, or another member fires it
            else:
                log.info("group complete", group=path_str(parent_path) or "root")
                result = _UNREAD
            path = parent_path  # the parent is done: its result is this one's
        if await self.store.finish_workflow(workflow_id, WorkflowState.SUCCEEDED):
            log.info("workflow succeeded")

    async def _publish(self, workflow_id: str, following: list[Any], log: Any) -> None:
        published = await publish_steps(self.app, workflow_id, following)
        if not published:
            return
        log.info("workflow steps published", steps=published)
        record = await self.store.get_workflow(workflow_id, definition=False)
        if record is not None and record.state.finished:
            # Failed or cancelled while they were published: they must not run.
            await asyncio.gather(*(self.store.cancel(task_id) for task_id in published))

    async def _failed(
        self,
        workflow_id: str,
        root: Node,
        path: Path,
        status: TaskStatus,
        state: WorkflowState,
        log: Any,
    ) -> None:
        error = status.error or ErrorInfo(type="Unknown", message="no error recorded")
        if state is WorkflowState.RUNNING:
            if await self.store.finish_workflow(
                workflow_id, WorkflowState.FAILED, error=error, failed_step=status.id
            ):
                log.error("workflow failed", failed_step=status.id, error=error.type)
                state = WorkflowState.FAILED
            else:  # finished meanwhile, by another step
                current = await self.store.get_workflow(workflow_id, definition=False)
                state = current.state if current is not None else state
        if state is not WorkflowState.FAILED:
            return  # cancelled (or succeeded): no error callback
        for above in ancestors(path):
            errback = node_at(root, above).get("link_error")
            if errback is not None:
                args = call_args(errback, status.id)
                if await publish_task(
                    self.app, errback_id(workflow_id, above), errback, args, None
                ):
                    log.info("error callback published", errback=errback["task"])

    async def _cancelled(self, workflow_id: str, root: Node, log: Any) -> None:
        if not await self.store.finish_workflow(workflow_id, WorkflowState.CANCELLED):
            return  # finished already; whoever finished it swept the rest
        log.info("workflow cancelled by a cancelled step; cancelling the others")
        await cancel_steps(self.app, workflow_id, root, interrupt=False)


async def cancel_steps(app: TaskQueue, workflow_id: str, root: Node, *, interrupt: bool) -> None:
    """Cancel every step of the workflow the store has a record of: waiting ones for
    good; running ones are marked, and each worker told once (``interrupt``: wait for
    their answers, as :meth:`TaskQueue.cancel` does)."""
    ids = [step_id(workflow_id, path) for path, _ in steps(root)]
    if interrupt:
        results = await asyncio.gather(*(app.cancel(i) for i in ids), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, UnknownTask):
                raise result
        return
    records = await asyncio.gather(*(app.store.cancel(i) for i in ids))
    running = [r.id for r in records if r is not None and r.cancel_requested]
    for task_id in running:
        try:
            await app.broker.publish_control(encode_cancel(task_id))
        except BrokerError as exc:  # the mark stays: it is not started again
            get_logger("taskq.workflows").warning(
                "could not tell the workers to stop a step", task_id=task_id, error=str(exc)
            )
