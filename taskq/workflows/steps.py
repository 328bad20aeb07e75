"""Publishing a workflow's steps idempotently, and reading the result of a node.

Used by the sender (the first steps) and by the worker that finished a step (what
follows). A step is published under its deterministic id (:mod:`taskq.workflows.shape`)
only if the store has no record of that id, and its ``queued`` record is written
*after* the broker confirmed the publish: a record therefore means "published", so a
repeat (a redelivered step, a re-sent workflow) publishes nothing twice, while a crash
between the confirm and the record leaves no record and the repeat publishes again (a
second copy of a step is harmless: the store lets it run to one outcome). Writing the
record first instead would lose the step to a crash between the record and the publish.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskq.call_record import call_of
from taskq.errors import MessageTooLarge, StoreError
from taskq.logs import get_logger
from taskq.message import TaskMessage
from taskq.sending import create
from taskq.status import TaskState
from taskq.workflows.shape import Node, Path, Start, children, in_sequence, node_at, path_str
from taskq.workflows.shape import step_id as make_step_id

if TYPE_CHECKING:
    from taskq.app import TaskQueue
    from taskq.topology import QueueSpec

log = get_logger("taskq.workflows")


def queue_of(app: TaskQueue, name: str) -> QueueSpec:
    task = app.tasks.get(name)
    return task.queue if task is not None else app._by_name(name)


async def publish_task(
    app: TaskQueue,
    task_id: str,
    node: Node,
    args: list[Any],
    workflow: dict[str, str] | None,
) -> bool:
    """Publish one task node under ``task_id`` unless the store knows the id; whether
    it was published now."""
    if await app.store.get(task_id) is not None:
        return False
    name = node["task"]
    message = TaskMessage(task_id, name, args, dict(node.get("kwargs") or {}), workflow)
    body = message.encode()
    if len(body) > app.max_message_size:
        raise MessageTooLarge(len(body), app.max_message_size, name)
    countdown = float((node.get("options") or {}).get("countdown") or 0.0)
    tracing = app.tracing
    if tracing is None:
        await app.broker.publish(queue_of(app, name), body, task_id=task_id, delay=countdown)
    else:  # a step's span: a child of the run (or the send) that publishes it
        with tracing.sending(name, [task_id]) as headers:
            await app.broker.publish(
                queue_of(app, name), body, task_id=task_id, delay=countdown, headers=headers
            )
    try:
        await create(app, task_id, name, call_of(args, message.kwargs))
    except StoreError as exc:  # published: a worker creates the record when it starts it
        log.warning(
            "step published, its queued record not written", task_id=task_id, error=str(exc)
        )
    return True


async def publish_steps(app: TaskQueue, workflow_id: str, items: Sequence[Start]) -> list[str]:
    """Publish the steps (concurrently: one window of confirms, one store round trip
    for their records); the ids published now, in order."""
    published = await asyncio.gather(
        *(
            publish_task(
                app,
                make_step_id(workflow_id, item.path),
                item.node,
                item.args,
                {"id": workflow_id, "path": path_str(item.path)},
            )
            for item in items
        )
    )
    return [
        make_step_id(workflow_id, item.path)
        for item, new in zip(items, published, strict=True)
        if new
    ]


class StepNotDone(Exception):
    """A node's result was asked for before all its steps succeeded."""


async def node_result(app: TaskQueue, workflow_id: str, root: Node, path: Path) -> Any:
    """The result of the node at ``path``, read from its steps' records: a task's
    result, a chain's (or chord's) last child's, a group's list of its members' in
    member order. Nothing is kept per node: the records are the results."""
    node = node_at(root, path)
    if node["type"] == "task":
        record = await app.store.get(make_step_id(workflow_id, path))
        if record is None or record.state is not TaskState.SUCCEEDED:
            raise StepNotDone(make_step_id(workflow_id, path))
        return record.result
    kids = children(node)
    if in_sequence(node):
        return await node_result(app, workflow_id, root, (*path, len(kids) - 1))
    return list(
        await asyncio.gather(
            *(node_result(app, workflow_id, root, (*path, index)) for index in range(len(kids)))
        )
    )
