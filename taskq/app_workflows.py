"""Workflows on :class:`~taskq.app.TaskQueue` (chain, group, chord): a step by task
name, sending a workflow and a handle for one; the rest is :mod:`taskq.workflows`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from taskq.workflows.handle import WorkflowHandle, send_workflow
from taskq.workflows.signature import Canvas, Signature

if TYPE_CHECKING:
    from taskq.app import TaskQueue


class AppWorkflows:
    """Mixed into :class:`~taskq.app.TaskQueue`; ``self`` is always that app, cast to
    it for the helpers that take one."""

    def signature(
        self,
        name: str,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        countdown: float | None = None,
        immutable: bool = False,
    ) -> Signature:
        """A step of a workflow by task name: no import of the task's code needed.

        >>> render, send = app.signature("emails.render", [uid]), app.signature("emails.send")
        >>> await taskq.chain(render, send).delay()
        """
        return Signature(
            name,
            args,
            kwargs,
            countdown=countdown,
            immutable=immutable,
            app=cast("TaskQueue", self),
        )

    async def send_workflow(
        self, workflow: Canvas, *, workflow_id: str | None = None
    ) -> WorkflowHandle:
        """Send a chain, group, chord (or a lone signature) as a workflow; its handle
        once its shape is recorded and its first steps confirmed by the broker.

        ``workflow_id`` is an idempotency key: sending an id the store knows publishes
        only the first steps that are missing (completing a send that failed half
        way), with the shape first recorded. Steps run under the task ids
        ``<workflow id>.<position>``; see :mod:`taskq.workflows`.
        """
        return await send_workflow(cast("TaskQueue", self), workflow, workflow_id)

    def workflow(self, workflow_id: str) -> WorkflowHandle:
        """A handle for a workflow id kept elsewhere."""
        return WorkflowHandle(cast("TaskQueue", self), workflow_id)
