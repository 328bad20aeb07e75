"""``taskq cancel TASK_ID...``: cancel tasks for good (see :mod:`taskq.cancel`).

One line per id on stdout: ``<id> cancelled``, ``<id> not cancelled: <state>`` (already
finished, or a running sync task) or, on stderr, that the id is unknown. Exit 0 when
every id was cancelled, 4 when one could not be, 6 when one is unknown (the others are
cancelled all the same).
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from taskq.app import TaskQueue
from taskq.cli.common import RET_FAILED, RET_NOT_FOUND, RET_OK, app_for, closing, error
from taskq.errors import UnknownTask


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
    app_option: argparse.ArgumentParser,
) -> None:
    cancel = commands.add_parser(
        "cancel",
        parents=[logging_options, app_option],
        help="cancel tasks: waiting ones never start, running async ones are interrupted",
        description="Cancel each task: a waiting one (queued, delayed, retrying) never "
        "starts, on any worker; a running async one is interrupted; a running sync one "
        "runs to its end. Exit 0 when all were cancelled, 4 when one could not be, 6 when "
        "an id is unknown.",
    )
    cancel.add_argument("task_ids", nargs="+", metavar="TASK_ID")
    cancel.set_defaults(run=cmd_cancel, default_level="warning")


def cmd_cancel(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=True)
    return asyncio.run(closing(app, _cancel(app, args.task_ids)))


async def _cancel(app: TaskQueue, task_ids: list[str]) -> int:
    code = RET_OK
    for task_id in task_ids:
        try:
            cancelled = await app.cancel(task_id)
        except UnknownTask as exc:
            error(str(exc))
            code = RET_NOT_FOUND
            continue
        if cancelled:
            print(f"{task_id} cancelled", flush=True)
            continue
        status = await app.store.get(task_id)
        state = "unknown" if status is None else status.state.value
        why = "a sync task runs to its end" if state == "started" else "already finished"
        print(f"{task_id} not cancelled: {state} ({why})", flush=True)
        if code == RET_OK:
            code = RET_FAILED
    return code
