"""``taskq send`` and ``taskq status``: send a task by name, ask how one went."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from taskq.app import TaskQueue
from taskq.cli.common import (
    RET_FAILED,
    RET_NOT_FOUND,
    RET_OK,
    RET_TIMEOUT,
    app_for,
    error,
    json_array,
    json_object,
)
from taskq.errors import TaskFailed
from taskq.status import TaskStatus


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
        "status", parents=[logging_options, app_option], help="show what the store knows of a task"
    )
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--json", action="store_true", help="print the TaskStatus as JSON")
    status.set_defaults(run=cmd_status, default_level="warning")


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
    app = app_for(args, need_broker=False, need_store=True)
    status = asyncio.run(_get_status(app, args.task_id))
    if status is None:
        error(f"no task with id {args.task_id!r} in the status store (unknown, or expired)")
        return RET_NOT_FOUND
    print(status.model_dump_json(indent=2) if args.json else describe(status))
    return RET_OK


async def _get_status(app: TaskQueue, task_id: str) -> TaskStatus | None:
    # Only the store: asking how a task went must work while the broker is down.
    try:
        await app.store.connect()
        return await app.store.get(task_id)
    finally:
        await app.store.close()


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
    if status.state.finished and status.error is None:
        rows.append(("result", json.dumps(status.result)))
    if status.error is not None:
        rows.append(("error", f"{status.error.type}: {status.error.message}"))
    lines = [f"{key:<9} {'-' if value is None else value}" for key, value in rows]
    if status.error is not None and status.error.traceback:
        lines.extend("  " + line for line in status.error.traceback.rstrip().splitlines())
    return "\n".join(lines)
