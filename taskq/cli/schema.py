"""``taskq schema [APP_PATH] [--task NAME]``: JSON Schema (2020-12) of the task message.

Without ``APP_PATH``: the envelope any task's message follows. With ``--task``: the
message of that task, its ``args``/``kwargs`` as the worker validates them. With an app
and no ``--task``: one schema per task, as one JSON object by task name. Nothing is
connected; see :mod:`taskq.schema`.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from taskq.cli.common import RET_NOT_FOUND, RET_OK, RET_USAGE, error, load_app
from taskq.schema import app_schemas, envelope_schema, task_schema


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    schema = commands.add_parser(
        "schema",
        parents=[logging_options],
        help="print the JSON Schema of the task message (of an app's tasks, with APP_PATH)",
    )
    schema.add_argument(
        "app_path",
        metavar="APP_PATH",
        nargs="?",
        help="an app, e.g. examples.app:app: its tasks' arguments (default: the envelope)",
    )
    schema.add_argument("--task", metavar="NAME", help="only this task's message (needs APP_PATH)")
    schema.set_defaults(run=cmd_schema, default_level="warning")


def cmd_schema(args: argparse.Namespace) -> int:
    if args.app_path is None:
        if args.task is not None:
            error("--task NAME needs the APP_PATH that registers it")
            return RET_USAGE
        document: Any = envelope_schema()
    else:
        app = load_app(args.app_path)
        if args.task is None:
            document = app_schemas(app.tasks)
        elif args.task in app.tasks:
            document = task_schema(app.tasks[args.task])
        else:
            error(
                f"{args.app_path} has no task named {args.task!r} "
                f"(its tasks: {', '.join(sorted(app.tasks)) or 'none'})"
            )
            return RET_NOT_FOUND
    print(render(document))
    return RET_OK


def render(document: Any) -> str:
    """The JSON as printed and committed: indented, keys in the order written."""
    return json.dumps(document, indent=2, ensure_ascii=False)
