"""``taskq send`` and ``taskq status``: send a task by name, ask how one went, or list
the latest tasks (``taskq status --task emails.send --state failed --limit 20``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from taskq.app import TaskQueue
from taskq.broadcast import describe_workers
from taskq.cli.common import (
    RET_FAILED,
    RET_NOT_FOUND,
    RET_OK,
    RET_TIMEOUT,
    app_for,
    error,
    json_array,
    json_object,
    positive_int,
)
from taskq.errors import TaskFailed
from taskq.status import TaskState, TaskStatus
from taskq.workflows import WorkflowStatus
from taskq.workflows.render import describe_workflow

T = TypeVar("T")

#: Tasks ``taskq status`` lists when no --limit is given.
DEFAULT_LIMIT = 20


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
    app_option: argparse.ArgumentParser,
) -> None:
    send = commands.add_parser(
        "send", parents=[logging_options, app_option], help="send a task by name, print its id"
    )
    send.add_argument("name", metavar="NAME", help="the task's name, e.g. emails.send")
    send.add_argument(
        "--args", type=json_array, default=[], help="positional arguments as a JSON array"
    )
    send.add_argument(
        "--kwargs", type=json_object, default={}, help="keyword arguments as a JSON object"
    )
    send.add_argument(
        "--task-id", metavar="ID", help="an idempotency key: an id already known is not sent again"
    )
    send.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait for the outcome and print the result as JSON",
    )
    send.set_defaults(run=cmd_send, default_level="warning")

    status = commands.add_parser(
        "status",
        parents=[logging_options, app_option],
        help="show what the store knows of a task or workflow, or list the latest tasks",
        description="With TASK_ID: that task's record (a workflow id: its state and "
        "tree). Without: the latest tasks, most recently updated first, filtered by "
        "--task and --state.",
    )
    status.add_argument("task_id", nargs="?", metavar="TASK_ID")
    status.add_argument("--task", metavar="NAME", help="list only the tasks of this name")
    status.add_argument(
        "--state",
        choices=[state.value for state in TaskState],
        help="list only the tasks in this state",
    )
    status.add_argument(
        "--limit",
        type=positive_int,
        metavar="N",
        help=f"list at most N tasks (default: {DEFAULT_LIMIT})",
    )
    status.add_argument(
        "--json", action="store_true", help="print the TaskStatus (a list of them) as JSON"
    )
    status.set_defaults(run=cmd_status, default_level="warning", usage_error=status.error)


def cmd_send(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=args.wait is not None)
    return asyncio.run(_send(app, args))


async def _send(app: TaskQueue, args: argparse.Namespace) -> int:
    try:
        handle = await app.send(args.name, args.args, args.kwargs, task_id=args.task_id)
        print(handle.id, flush=True)
        if args.wait is None:
            return RET_OK
        try:
            value = await handle.result(timeout=args.wait)
        except TaskFailed as exc:
            error(str(exc))
            return RET_FAILED
        except TimeoutError as exc:  # ResultTimeout
            error(str(exc))
            return RET_TIMEOUT
        print(json.dumps(value))
        return RET_OK
    finally:
        await app.close()


def cmd_status(args: argparse.Namespace) -> int:
    listing = [args.task, args.state, args.limit]
    if args.task_id is not None and any(option is not None for option in listing):
        args.usage_error("give a TASK_ID, or --task / --state / --limit to list tasks, not both")
    app = app_for(args, need_broker=False, need_store=True)
    if args.task_id is None:
        return _list(app, args)
    status, workers = asyncio.run(_get_status(app, args.task_id))
    if status is None:
        error(
            f"no task or workflow with id {args.task_id!r} in the status store "
            "(unknown, or expired)"
        )
        return RET_NOT_FOUND
    if args.json and workers:  # a broadcast call: each worker's record too
        data = status.model_dump(mode="json")
        data["workers"] = {w: s.model_dump(mode="json") for w, s in workers.items()}
        print(json.dumps(data, indent=2))
    elif args.json:
        print(status.model_dump_json(indent=2))
    elif isinstance(status, TaskStatus):
        print("\n".join([describe(status), *describe_workers(workers)]))
    else:
        print(describe_workflow(status))
    return RET_OK


async def _get_status(
    app: TaskQueue, task_id: str
) -> tuple[TaskStatus | WorkflowStatus | None, dict[str, TaskStatus]]:
    """The task's record (with its workers' records if it is a broadcast call), else
    the workflow's (state and tree) of that id."""

    async def lookup() -> tuple[TaskStatus | WorkflowStatus | None, dict[str, TaskStatus]]:
        status = await app.store.get(task_id)
        if status is None:
            return await app.workflow(task_id).status(), {}
        return status, await app.store.worker_statuses(task_id)

    return await _from_store(app, lookup)


def _list(app: TaskQueue, args: argparse.Namespace) -> int:
    state = None if args.state is None else TaskState(args.state)
    limit = DEFAULT_LIMIT if args.limit is None else args.limit
    found = asyncio.run(
        _from_store(app, lambda: app.store.recent(name=args.task, state=state, limit=limit))
    )
    if args.json:
        print(json.dumps([status.model_dump(mode="json") for status in found], indent=2))
    else:
        for status in found:
            print(summary(status))
    return RET_OK


async def _from_store(app: TaskQueue, call: Callable[[], Awaitable[T]]) -> T:
    # Only the store: asking how tasks went must work while the broker is down.
    try:
        await app.store.connect()
        return await call()
    finally:
        await app.store.close()


def summary(status: TaskStatus) -> str:
    """One line a task, for the listing: id, name, state, attempts, when it last
    changed, and the error if any."""
    when = status.finished_at or status.started_at or status.created_at
    line = (
        f"{status.id}  {status.name}  {status.state.value}  "
        f"attempts={status.attempts}  {'-' if when is None else when.isoformat()}"
    )
    if status.error is not None:
        line += f"  {status.error.type}: {' '.join(status.error.message.split())}"
    return line


def describe(status: TaskStatus) -> str:
    """A status for people: one field a line, the traceback indented below."""
    rows: list[tuple[str, object]] = [
        ("task", status.id),
        ("name", status.name),
        ("state", status.state.value),
        ("attempts", status.attempts),
        ("created", status.created_at),
        ("started", status.started_at),
        ("finished", status.finished_at),
    ]
    if status.started_at and status.finished_at:
        took = (status.finished_at - status.started_at).total_seconds()
        rows.append(("took", f"{took:.3f}s"))
    if status.state is TaskState.SUCCEEDED:
        rows.append(("result", json.dumps(status.result)))
    if status.cancel_requested:
        rows.append(("cancel", "requested; the worker running it has not answered yet"))
    if status.error is not None:
        rows.append(("error", f"{status.error.type}: {status.error.message}"))
    lines = [f"{key:<9} {'-' if value is None else value}" for key, value in rows]
    if status.error is not None and status.error.traceback:
        lines.extend("  " + line for line in status.error.traceback.rstrip().splitlines())
    return "\n".join(lines)
