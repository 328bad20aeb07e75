"""The ``taskq`` command (also ``python -m taskq``): run a worker, send a task, ask a
status, operate the dead letters.

    taskq worker workers.emails:app --concurrency 16 --tasks 'emails.*'
    taskq scheduler workers.reports:app  # send periodic tasks (--list: next ticks)
    taskq send emails.send --args '["0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11", "hi"]' --wait 10
    taskq status 6f1c2a0e-4b7d-4f55-9a43-2b1e0c9d8a77 --json
    taskq cancel 6f1c2a0e-4b7d-4f55-9a43-2b1e0c9d8a77
    taskq dead list --task emails.send --limit 20
    taskq dead requeue --task emails.send        # or: taskq dead requeue ID ...
    taskq dead purge
    taskq events 'failed.#' --json      # tail lifecycle events until Ctrl-C
    taskq bench --tasks 20000 --json    # throughput and latency next to plain aio-pika
    taskq schema examples.app:app --task emails.send    # JSON Schema of its message
    taskq dashboard examples.app:app --port 8080        # the web dashboard
    taskq store migrate --app examples.app:app          # create/upgrade its PostgreSQL schema

``APP_PATH`` is ``package.module:attribute`` naming a :class:`~taskq.TaskQueue`; the
current directory is put first on ``sys.path`` (as uvicorn does), so the app's own
packages import from where the command runs. Without ``--app``, ``send``, ``status`` and
``dead`` build ``TaskQueue()`` from ``TASKQ_BROKER_URL``, ``TASKQ_STORE_URL`` and
``TASKQ_EXCHANGE``: sending by name needs no import of the task code.

Exit codes:

    0   RET_OK         done (a worker stopped cleanly by SIGTERM / SIGINT)
    1   RET_ERROR      any other taskq error (bad option, invalid arguments, publish ...)
    2   RET_IMPORT     APP_PATH cannot be imported or is not a TaskQueue
    3   RET_CONNECT    the broker or the status store cannot be reached
    4   RET_FAILED     ``send --wait``: the task failed; ``cancel``: a task could not be
                       cancelled (finished already, or a running sync task)
    5   RET_TIMEOUT    ``send --wait``: the task did not finish in time
    6   RET_NOT_FOUND  ``status``, ``cancel``: the store has no record of that id;
                       ``dead requeue``: an ID given has no dead letter to requeue (the
                       others are requeued); ``schema --task``: no such task
    64  RET_USAGE      the command line itself is wrong (argparse's own usage errors)

Errors are printed as one line on stderr (``taskq: error: ...``), with any password in
a URL masked; logs go to stderr too, the command's answer to stdout.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from taskq.cli import (
    bench,
    cancel,
    config,
    dashboard,
    dead,
    events,
    inspect,
    scheduler,
    schema,
    store,
    tasks,
    worker,
)
from taskq.cli.common import (
    RET_CONNECT,
    RET_ERROR,
    RET_FAILED,
    RET_IMPORT,
    RET_INTERRUPTED,
    RET_NOT_FOUND,
    RET_OK,
    RET_TIMEOUT,
    RET_USAGE,
    Parser,
    error,
    guarded,
    load_app,
)
from taskq.errors import ConfigurationError
from taskq.logconfig import LOG_FORMATS, LOG_LEVELS, configure_logging
from taskq.settings import TaskqSettings

__all__ = [
    "RET_CONNECT",
    "RET_ERROR",
    "RET_FAILED",
    "RET_IMPORT",
    "RET_INTERRUPTED",
    "RET_NOT_FOUND",
    "RET_OK",
    "RET_TIMEOUT",
    "RET_USAGE",
    "build_parser",
    "load_app",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    logging_options = Parser(add_help=False)
    group = logging_options.add_argument_group("logging (to stderr)")
    group.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="default: TASKQ_LOG_LEVEL, else info for worker, warning for the others",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default=None,
        help="console on a terminal, JSON lines otherwise (default: TASKQ_LOG_FORMAT, else auto)",
    )
    app_option = Parser(add_help=False)
    app_option.add_argument(
        "--app",
        metavar="APP_PATH",
        help="use this app ('module:attribute') instead of one built from TASKQ_* variables",
    )

    parser = Parser(prog="taskq", description="Python tasks on RabbitMQ.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

    worker.register(commands, logging_options=logging_options)
    scheduler.register(commands, logging_options=logging_options)
    tasks.register(commands, logging_options=logging_options, app_option=app_option)
    dead.register(commands, logging_options=logging_options, app_option=app_option)
    cancel.register(commands, logging_options=logging_options, app_option=app_option)
    inspect.register(commands, logging_options=logging_options)
    events.register(commands, logging_options=logging_options, app_option=app_option)
    config.register(commands, logging_options=logging_options)
    bench.register(commands, logging_options=logging_options)
    schema.register(commands, logging_options=logging_options)
    dashboard.register(commands, logging_options=logging_options)
    store.register(commands, logging_options=logging_options, app_option=app_option)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # to start the same command again (`_replace_process`)
    try:  # the flags, else TASKQ_LOG_LEVEL / TASKQ_LOG_FORMAT
        logging_settings = TaskqSettings.load(log_level=args.log_level, log_format=args.log_format)
    except ConfigurationError as exc:
        error(str(exc))
        return RET_ERROR
    level = logging_settings.log_level or args.default_level
    configure_logging(
        level=level,
        fmt=logging_settings.log_format,
        # A worker's log shows the driver's reconnects; send and status answer in one
        # line, and the driver's own account of a failed connect would only repeat it.
        drivers_level=level
        if args.run in (worker.cmd_worker, scheduler.cmd_scheduler) or level == "debug"
        else "critical",
    )
    return guarded(lambda: args.run(args))
