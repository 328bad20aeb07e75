"""``taskq scheduler APP_PATH``: send the app's periodic schedules' ticks until SIGTERM /
SIGINT (:mod:`taskq.schedules`). Run two or more for high availability: one is active.

``--list`` prints each schedule with its next 3 ticks and exits. Either way, a schedule
that cannot work (a cron expression that does not parse, a task the app does not know,
arguments that do not fit it) is refused at start with one line naming it (exit 1).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from taskq import loops
from taskq.app import TaskQueue
from taskq.cli.common import RET_OK, load_app
from taskq.errors import ConfigurationError
from taskq.schedules.schedule import Schedule, format_tick
from taskq.schedules.scheduler import Scheduler
from taskq.status import utcnow

#: Ticks ``--list`` shows per schedule.
LISTED_TICKS = 3


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "scheduler",
        parents=[logging_options],
        help="send the app's periodic tasks on their schedules until SIGTERM / SIGINT",
    )
    parser.add_argument("app_path", metavar="APP_PATH", help="the app, e.g. workers.reports:app")
    parser.add_argument(
        "--list", action="store_true", help="print each schedule with its next 3 ticks, and exit"
    )
    parser.add_argument("--json", action="store_true", help="with --list: print JSON")
    parser.set_defaults(run=cmd_scheduler, default_level="info")


def cmd_scheduler(args: argparse.Namespace) -> int:
    app = load_app(args.app_path)
    app.schedules.check(app)
    if args.list:
        _print_list(app, as_json=args.json)
        return RET_OK
    if not len(app.schedules):
        raise ConfigurationError(
            f"{args.app_path} has no schedules: add @app.periodic(...) above a task"
        )
    # Imported here: only the CLI needs to know which broker lives in-process.
    from taskq.brokers.memory import MemoryBroker

    if isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            "the broker is the embedded memory://, which no worker in another process "
            "reads: set TASKQ_BROKER_URL (e.g. amqp://guest:guest@127.0.0.1:5672/)"
        )
    loops.run(_serve(app))  # SIGTERM / SIGINT: leave the line, then return
    return RET_OK


async def _serve(app: TaskQueue) -> None:
    try:
        await Scheduler(app).run()
    finally:
        await app.close()


def _print_list(app: TaskQueue, *, as_json: bool) -> None:
    now = utcnow()
    entries = [_entry(schedule, now) for schedule in app.schedules]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    if not entries:
        print("no schedules")
    for schedule, entry in zip(app.schedules, entries, strict=True):
        print(f"{entry['name']}: task {entry['task']}, {schedule.describe()}")
        for tick in entry["next_ticks"]:
            print(f"  {tick['utc']}  {tick['local']}")


def _entry(schedule: Schedule, now: Any) -> dict[str, Any]:
    ticks = schedule.ticks(now, LISTED_TICKS)
    return {
        "name": schedule.name,
        "task": schedule.task,
        "cron": schedule.cron,
        "every": None if schedule.every is None else schedule.every.total_seconds(),
        "timezone": schedule.timezone,
        "catch_up": schedule.catch_up,
        "next_ticks": [
            {
                "utc": format_tick(tick),
                "local": tick.astimezone(schedule.zone).isoformat(),
                "task_id": schedule.task_id(tick),
            }
            for tick in ticks
        ],
    }
