"""``taskq config [APP_PATH] [--json]``: the effective settings, passwords masked, and
where each value came from (argument, env, default).

With ``APP_PATH``, the app's own values (what its ``TaskQueue(...)`` was given, over
the environment, over the defaults); without, what ``TaskQueue()`` and ``taskq
worker`` would take from the environment. Nothing is connected: it is a look at the
configuration, safe to paste into an issue.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from taskq.cli.common import RET_OK, load_app
from taskq.settings import URL_FIELDS, TaskqSettings


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    config = commands.add_parser(
        "config",
        parents=[logging_options],
        help="print the effective settings (passwords masked) and where each came from",
    )
    config.add_argument(
        "app_path",
        metavar="APP_PATH",
        nargs="?",
        help="an app, e.g. workers.emails:app (default: the TASKQ_* variables alone)",
    )
    config.add_argument(
        "--json",
        action="store_true",
        help='one JSON object: {"NAME": {"value": ..., "source": ..., "env": ...}}',
    )
    config.set_defaults(run=cmd_config, default_level="warning")


def cmd_config(args: argparse.Namespace) -> int:
    rows = effective_settings(args.app_path)
    if args.json:
        print(json.dumps(rows, indent=2))
        return RET_OK
    width = max(len(name) for name in rows)
    for name, row in rows.items():
        value = "-" if row["value"] is None else row["value"]
        print(f"{name:<{width}}  {value}  ({row['source']}, {row['env']})")
    return RET_OK


def effective_settings(app_path: str | None) -> dict[str, dict[str, Any]]:
    """Each setting's shown value, its source and its variable's name."""
    if app_path is None:
        settings, arguments = TaskqSettings.load(), {}
        shown = settings.display()
    else:
        app = load_app(app_path)
        settings, arguments = app.settings, app.arguments
        shown = settings.display()
        # A broker or store given as an instance has no URL among the settings: show
        # the instance's own (already masked).
        actual = {"broker_url": app.broker.display_url, "store_url": app.store.display_url}
        for field in URL_FIELDS:
            if arguments.get(field) is None and actual[field] != shown[field]:
                shown[field] = actual[field]
                arguments = {**arguments, field: actual[field]}
    sources = settings.sources(arguments)
    return {
        name: {"value": value, "source": sources[name], "env": TaskqSettings.env_name(name)}
        for name, value in shown.items()
    }
