"""``taskq worker --check APP_PATH``: what a worker of this app would run, and whether it
could reach its broker and status store; a deploy script's health check.

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
        "queue_type": task.queue.queue_type,
        "async": task.is_async,
        "max_retries": retry.max_retries,
        "backoff": retry.backoff,
        "backoff_max": retry.backoff_max,
        "jitter": retry.jitter,
        "timeout": task.timeout,
    }


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
            f"backoff={t['backoff']:g}s..{t['backoff_max']:g}s  timeout={timeout}"
        )
    return "\n".join(lines)
