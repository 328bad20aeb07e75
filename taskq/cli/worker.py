"""``taskq worker``: run an app's tasks until SIGTERM / SIGINT."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import structlog

from taskq.cli.common import RET_OK, load_app
from taskq.worker import THREAD_NAME_PREFIX, Worker


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[logging_options], help="run the tasks of an app until SIGTERM / SIGINT"
    )
    worker.add_argument("app_path", metavar="APP_PATH", help="the app, e.g. workers.emails:app")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=16,
        metavar="N",
        help="tasks run at once, and the prefetch of each task queue (default: 16)",
    )
    worker.add_argument(
        "--tasks",
        nargs="+",
        action="extend",
        metavar="PATTERN",
        help="only tasks matching these topic patterns, e.g. 'emails.*' (default: all)",
    )
    worker.add_argument(
        "--threads", type=int, metavar="K", help="threads for sync tasks (default: the concurrency)"
    )
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="on stop, how long running tasks may finish before they are cancelled and "
        "requeued (default: 30)",
    )
    worker.set_defaults(run=cmd_worker, default_level="info")


def cmd_worker(args: argparse.Namespace) -> int:
    app = load_app(args.app_path)
    worker = Worker(
        app,
        concurrency=args.concurrency,
        tasks=args.tasks,
        threads=args.threads,
        grace=args.grace,
    )
    asyncio.run(worker.run())  # SIGTERM / SIGINT: graceful stop, then return
    if worker.replace_requested:
        _replace_process(args.argv)
    _exit_past_stuck_threads()
    return RET_OK


def _replace_process(argv: Sequence[str]) -> NoReturn:
    """A sync task overran its time limit and its thread cannot be stopped: start this
    worker afresh in the same process (same pid, so a supervisor sees no exit), which
    ends the stuck thread. Its message was already settled by the retry policy."""
    structlog.get_logger("taskq.cli").warning("replacing the worker process", pid=os.getpid())
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "taskq", *argv])


def _exit_past_stuck_threads(linger: float = 1.0) -> None:
    """A sync task still running after the grace period was cancelled (its message is
    back in the queue), but Python cannot stop its thread, and the interpreter joins
    pool threads at exit: a task blocked for an hour would keep the stopped worker
    alive for an hour. Idle pool threads leave within ``linger``; if any is still busy
    after that, exit now, without waiting for it."""
    deadline = time.monotonic() + linger
    busy = []
    for thread in threading.enumerate():
        if thread.name.startswith(THREAD_NAME_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                busy.append(thread.name)
    if busy:
        structlog.get_logger("taskq.cli").warning(
            "sync tasks still running after the grace period; exiting without them",
            threads=busy,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(RET_OK)
