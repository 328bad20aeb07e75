"""``taskq worker``: run an app's tasks until SIGTERM / SIGINT.

One process by default. ``--processes N`` or ``--max-tasks-per-child`` put N of them
under a supervisor (``taskq/supervisor.py``) that restarts the ones that die; this
process then becomes that supervisor (``taskq.supervise``, standard library only).
Each child runs this same command line, told by ``TASKQ_WORKER_SLOT`` to be one
worker; with ``--start-method fork`` (Linux's default) the children are forked from
one process that ran it with ``TASKQ_WORKER_ZYGOTE`` and imported the app once
(``taskq/zygote.py``).
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

from taskq import health, loops, tracing
from taskq.app import TaskQueue
from taskq.cli.check import cmd_check
from taskq.cli.common import RET_OK, guarded, load_app, positive_int
from taskq.errors import ConfigurationError
from taskq.logs import get_logger
from taskq.settings import TaskqSettings
from taskq.supervise import supervise_command
from taskq.supervisor import SLOT_ENV, child_health_file
from taskq.worker import THREAD_NAME_PREFIX, Worker
from taskq.zygote import ZYGOTE_ENV, fork_available, serve

#: How a supervisor starts its children: forked from a process that imported the app
#: (shares its memory), or each a fresh interpreter.
START_METHODS = ("fork", "spawn")

#: Where the worker's metrics listen unless ``--metrics-host`` says otherwise.
DEFAULT_METRICS_HOST = "127.0.0.1"


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
        "--start-method",
        choices=START_METHODS,
        default=None,
        help="under the supervisor: fork the children from one process that imported the "
        "app, sharing its memory, or spawn each as a fresh interpreter (default: "
        "TASKQ_START_METHOD, else fork on Linux, spawn elsewhere); spawn for an app that "
        "opens connections or starts threads when it is imported",
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
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on this port; under the supervisor one port serves "
        "every child (needs taskq[metrics])",
    )
    worker.add_argument(
        "--metrics-host",
        default=DEFAULT_METRICS_HOST,
        metavar="HOST",
        help=f"the address the metrics listen on (default: {DEFAULT_METRICS_HOST})",
    )
    worker.add_argument(
        "--otel",
        action="store_true",
        help="trace with the OpenTelemetry SDK, set up from the OTEL_* variables "
        "(also TASKQ_OTEL=1; needs taskq[otel])",
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
    zygote = os.environ.get(ZYGOTE_ENV)
    supervised = settings.processes > 1 or settings.max_tasks_per_child is not None
    if slot is None and zygote is None and supervised:
        return _supervise(args, settings)
    app = load_app(args.app_path)
    if zygote is not None:
        _preimport()
        return serve(zygote, lambda child: guarded(lambda: _run(args, settings, app, str(child))))
    return _run(args, settings, app, slot)


def _run(
    args: argparse.Namespace, settings: TaskqSettings, app: TaskQueue, slot: str | None
) -> int:
    """One worker until it is stopped: this process's, or a forked child's."""
    traced = args.otel or tracing.otel_requested()
    if traced:
        tracing.setup_sdk()
    metrics, server = _worker_metrics(args, child=slot is not None)
    worker = Worker(
        app,
        concurrency=settings.concurrency,
        tasks=args.tasks,
        threads=settings.threads,
        grace=settings.grace,
        max_tasks=settings.max_tasks_per_child,
        metrics=metrics,
    )
    health_file = args.health_file
    if health_file is not None and slot is not None:
        health_file = child_health_file(health_file, int(slot))
    # SIGTERM / SIGINT: graceful stop, then return
    try:
        loops.run(_serve(worker, health_file, args.health_interval))
    finally:
        if server is not None:
            server.close()
        if traced:
            tracing.shutdown_sdk()  # the spans still batched go out
    if worker.replace_requested:
        _replace_process(args.argv)
    _exit_past_stuck_threads()
    return RET_OK


def _supervise(args: argparse.Namespace, settings: TaskqSettings) -> NoReturn:
    """Become the supervisor: ``python -m taskq.supervise`` in this process's place
    (same pid), which imports none of what this one did (pydantic, the drivers)."""
    logging_settings = TaskqSettings.load(log_level=args.log_level, log_format=args.log_format)
    method = args.start_method or os.environ.get("TASKQ_START_METHOD") or _default_method()
    if method not in START_METHODS:
        raise ConfigurationError(
            f"TASKQ_START_METHOD must be one of {', '.join(START_METHODS)}, not {method!r}"
        )
    argv = supervise_command(
        [sys.executable, "-m", "taskq", *args.argv],
        processes=settings.processes,
        health_file=args.health_file,
        health_interval=args.health_interval,
        metrics_port=args.metrics_port,
        metrics_host=args.metrics_host,
        log_level=logging_settings.log_level or args.default_level,
        log_format=logging_settings.log_format,
        fork=method == "fork" and fork_available(),
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(argv[0], argv)


def _default_method() -> str:
    return "fork" if fork_available() else "spawn"


def _preimport() -> None:
    """What a worker imports only once it runs, imported in the zygote instead, so the
    children share it: the event loop (uvloop) and the driver modules."""
    loops.loop_factory()


def _worker_metrics(args: argparse.Namespace, *, child: bool) -> tuple[Any, Any]:
    """The worker's metrics and their server (none in a supervisor's child: the
    supervisor serves them); ``(None, None)`` without ``--metrics-port``."""
    if args.metrics_port is None:
        return None, None
    from taskq.metrics import WorkerMetrics, serve

    metrics = WorkerMetrics()
    if child:
        return metrics, None
    return metrics, serve(metrics.registry, port=args.metrics_port, host=args.metrics_host)


async def _serve(worker: Worker, health_file: str | None, interval: float) -> None:
    async with health.heartbeat(health_file, interval):
        await worker.run()


def _replace_process(argv: Sequence[str]) -> NoReturn:
    """A sync task overran its time limit and its thread cannot be stopped: start this
    worker afresh in the same process (same pid, so a supervisor sees no exit), which
    ends the stuck thread. Its message was already settled by the retry policy."""
    get_logger("taskq.cli").warning("replacing the worker process", pid=os.getpid())
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
        get_logger("taskq.cli").warning(
            "sync tasks still running after the grace period; exiting without them",
            threads=busy,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(RET_OK)
