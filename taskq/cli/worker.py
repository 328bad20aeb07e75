"""``taskq worker``: run an app's tasks until SIGTERM / SIGINT.

One process by default. ``--processes N`` or ``--max-tasks-per-child`` put N of them
under a supervisor (``taskq/supervisor.py``) that restarts the ones that die; each
child runs this same command line, told by ``TASKQ_WORKER_SLOT`` to be one worker.
``--check`` only reports what a worker would run and whether it could connect.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, NoReturn

import structlog

from taskq import health, loops
from taskq.cli.check import cmd_check
from taskq.cli.common import RET_OK, load_app, positive_int
from taskq.settings import TaskqSettings
from taskq.supervisor import SLOT_ENV, Supervisor, child_health_file
from taskq.worker import THREAD_NAME_PREFIX, Worker


def register(commands: Any, *, logging_options: argparse.ArgumentParser) -> None:
    worker = commands.add_parser(
        "worker", parents=[logging_options], help="run the tasks of an app until SIGTERM / SIGINT"
    )
    worker.add_argument("app_path", metavar="APP_PATH", help="the app, e.g. workers.emails:app")
    worker.add_argument(
        "--concurrency",
        type=int,
        default=None,
        metavar="N",
        help="tasks run at once, and the prefetch of each task queue "
        "(default: TASKQ_CONCURRENCY, else 16)",
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
        default=None,
        metavar="SECONDS",
        help="on stop, how long running tasks may finish before they are cancelled and "
        "requeued (default: TASKQ_GRACE, else 30)",
    )
    worker.add_argument(
        "--processes",
        type=positive_int,
        default=None,
        metavar="N",
        help="worker processes, under a supervisor that restarts them when N > 1 "
        "(default: TASKQ_PROCESSES, else 1)",
    )
    worker.add_argument(
        "--max-tasks-per-child",
        type=positive_int,
        metavar="N",
        help="replace a worker process by a fresh one after N tasks (frees what tasks "
        "leaked); always runs under the supervisor",
    )
    worker.add_argument(
        "--health-file",
        metavar="PATH",
        help="touched every --health-interval seconds while the event loop runs; under the "
        "supervisor each child touches PATH.<slot> and the supervisor PATH",
    )
    worker.add_argument(
        "--health-interval",
        type=float,
        default=health.DEFAULT_INTERVAL,
        metavar="SECONDS",
        help=f"(default: {health.DEFAULT_INTERVAL:g}); a file older than "
        f"{health.STALE_INTERVALS} intervals belongs to a wedged process",
    )
    worker.add_argument(
        "--check",
        action="store_true",
        help="list the app's tasks, check the broker and store connections, and exit",
    )
    worker.add_argument("--json", action="store_true", help="with --check: print JSON")
    worker.set_defaults(run=cmd_worker, default_level="info")


def cmd_worker(args: argparse.Namespace) -> int:
    if args.check:
        return cmd_check(args)
    # The flags, else TASKQ_* variables (children inherit them), else the defaults.
    settings = TaskqSettings.load(
        concurrency=args.concurrency,
        threads=args.threads,
        grace=args.grace,
        processes=args.processes,
        max_tasks_per_child=args.max_tasks_per_child,
    )
    slot = os.environ.get(SLOT_ENV)
    if slot is None and (settings.processes > 1 or settings.max_tasks_per_child is not None):
        supervisor = Supervisor(
            [sys.executable, "-m", "taskq", *args.argv],
            processes=settings.processes,
            health_file=args.health_file,
            health_interval=args.health_interval,
        )
        return supervisor.run()
    app = load_app(args.app_path)
    worker = Worker(
        app,
        concurrency=settings.concurrency,
        tasks=args.tasks,
        threads=settings.threads,
        grace=settings.grace,
        max_tasks=settings.max_tasks_per_child,
    )
    health_file = args.health_file
    if health_file is not None and slot is not None:
        health_file = child_health_file(health_file, int(slot))
    # SIGTERM / SIGINT: graceful stop, then return
    loops.run(_serve(worker, health_file, args.health_interval))
    if worker.replace_requested:
        _replace_process(args.argv)
    _exit_past_stuck_threads()
    return RET_OK


async def _serve(worker: Worker, health_file: str | None, interval: float) -> None:
    async with health.heartbeat(health_file, interval):
        await worker.run()


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
