"""``taskq worker --check APP_PATH``: what a worker of this app would run, and whether it
could reach its broker and status store; a deploy script's health check. Each task's
queue type is the one this broker declares (a priority task's queue is classic on
RabbitMQ 3.x), with its ``max_priority`` and ``prefetch`` where it sets them.

Exits 0 when both connect, else with the CLI's usual codes (``RET_IMPORT`` for an app
that does not import, ``RET_CONNECT`` for a broker or store out of reach), its error
as one line with any password masked.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from taskq.app import TaskQueue
from taskq.cli.common import RET_OK, load_app
from taskq.task import Task


def cmd_check(args: argparse.Namespace) -> int:
    app = load_app(args.app_path)
    asyncio.run(_connect_each(app))
    report = {
        "app": args.app_path,
        "exchange": app.topology.exchange,
        "broker": app.broker.display_url,
        "store": app.store.display_url,
        "tasks": [describe_task(app, t) for t in sorted(app.tasks.values(), key=_name)],
    }
    print(json.dumps(report, indent=2) if args.json else _human(report))
    return RET_OK


async def _connect_each(app: TaskQueue) -> None:
    """Connect and close the broker, then the store: the error names the one that
    failed (``BrokerConnectionError`` / ``StoreError``, both ``RET_CONNECT``)."""
    for part in (app.broker, app.store):
        await part.connect()
        await part.close()


def describe_task(app: TaskQueue, task: Task[Any, Any]) -> dict[str, Any]:
    retry = task.retry
    return {
        "name": task.name,
        "queue": app.topology.queue_name(task.name),
        # As declared on this broker: a priority task's quorum queue is classic where
        # quorum queues have no priorities (read while _connect_each was connected).
        "queue_type": app.broker.declared_queue_type(task.queue),
        **(_broadcast_queue(app, task) if task.broadcast else {}),
        "async": task.is_async,
        "max_retries": retry.max_retries,
        "backoff": retry.backoff,
        "backoff_max": retry.backoff_max,
        "jitter": retry.jitter,
        "timeout": task.timeout,
        "max_priority": task.max_priority,
        "prefetch": task.prefetch,
    }


def _broadcast_queue(app: TaskQueue, task: Task[Any, Any]) -> dict[str, Any]:
    """A broadcast task has a queue per worker behind its fanout (taskq.broadcast)."""
    return {
        "queue": app.topology.broadcast_queue(task.name, "<worker id>"),
        "queue_type": "broadcast",
    }


def _ordering(task: dict[str, Any]) -> str:
    """``  max_priority=9  prefetch=1`` for a task that sets them, else nothing."""
    return "".join(
        f"  {key}={task[key]}" for key in ("max_priority", "prefetch") if task[key] is not None
    )


def _name(task: Task[Any, Any]) -> str:
    return task.name


def _human(report: dict[str, Any]) -> str:
    tasks: list[dict[str, Any]] = report["tasks"]
    lines = [
        f"app       {report['app']}",
        f"exchange  {report['exchange']}",
        f"broker    {report['broker']}  ok",
        f"store     {report['store']}  ok",
        f"tasks     {len(tasks)}",
    ]
    width = max((len(t["name"]) for t in tasks), default=0)
    for t in tasks:
        timeout = "none" if t["timeout"] is None else f"{t['timeout']:g}s"
        lines.append(
            f"  {t['name']:<{width}}  queue={t['queue']} ({t['queue_type']})  "
            f"{'async' if t['async'] else 'sync'}  max_retries={t['max_retries']}  "
            f"backoff={t['backoff']:g}s..{t['backoff_max']:g}s  timeout={timeout}" + _ordering(t)
        )
    return "\n".join(lines)
