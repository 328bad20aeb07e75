"""The ``taskq`` command (also ``python -m taskq``): run a worker, send a task, ask a
status, operate the dead letters.

    taskq worker workers.emails:app --concurrency 16 --tasks 'emails.*'
    taskq send emails.send --args '["0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11", "hi"]' --wait 10
    taskq status 6f1c2a0e-4b7d-4f55-9a43-2b1e0c9d8a77 --json
    taskq dead list --task emails.send --limit 20
    taskq dead requeue --task emails.send        # or: taskq dead requeue ID ...
    taskq dead purge

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
    4   RET_FAILED     ``send --wait``: the task failed
    5   RET_TIMEOUT    ``send --wait``: the task did not finish in time
    6   RET_NOT_FOUND  ``status``: the store has no record of that id; ``dead requeue``:
                       an ID given has no dead letter to requeue (the others are requeued)
    64  RET_USAGE      the command line itself is wrong (argparse's own usage errors)

Errors are printed as one line on stderr (``taskq: error: ...``), with any password in
a URL masked; logs go to stderr too, the command's answer to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Sequence
from typing import Any, NoReturn, TypeVar

import structlog

from taskq.app import TaskQueue
from taskq.brokers import DeadLetter
from taskq.errors import (
    BrokerConnectionError,
    ConfigurationError,
    StoreError,
    TaskFailed,
    TaskqError,
)
from taskq.logconfig import LOG_FORMATS, LOG_LEVELS, configure_logging
from taskq.status import TaskStatus
from taskq.worker import THREAD_NAME_PREFIX, Worker

RET_OK = 0
RET_ERROR = 1
RET_IMPORT = 2
RET_CONNECT = 3
RET_FAILED = 4
RET_TIMEOUT = 5
RET_NOT_FOUND = 6
RET_USAGE = 64  # sysexits.h EX_USAGE: kept apart from RET_IMPORT, unlike argparse's 2
RET_INTERRUPTED = 130  # interrupted before a worker took over the signals

T = TypeVar("T")


class AppImportError(TaskqError):
    """``APP_PATH`` does not lead to a TaskQueue."""


# -- loading an app -----------------------------------------------------------------


def load_app(path: str) -> TaskQueue:
    """Import ``package.module:attribute`` (the attribute may be dotted) and check that
    it is a :class:`TaskQueue`. Raises :class:`AppImportError` with a one-line reason."""
    module_name, sep, attr = path.partition(":")
    if not (sep and module_name and attr):
        raise AppImportError(f"APP_PATH must look like 'package.module:attribute', not {path!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and _is_prefix(exc.name, module_name):
            raise AppImportError(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                f"(looked in {cwd} and sys.path)"
            ) from None
        raise _failed_import(module_name, exc) from exc
    except TaskqError:
        raise  # e.g. a bad URL in TaskQueue(...): its message says it all
    except Exception as exc:
        raise _failed_import(module_name, exc) from exc
    try:
        app: object = functools.reduce(getattr, attr.split("."), module)
    except AttributeError:
        raise AppImportError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(app, TaskQueue):
        raise AppImportError(f"{path!r} is a {type(app).__name__}, not a taskq.TaskQueue")
    return app


def _is_prefix(missing: str, module_name: str) -> bool:
    return module_name == missing or module_name.startswith(missing + ".")


def _failed_import(module_name: str, exc: Exception) -> AppImportError:
    # The module exists and raised: a bug or a missing dependency of the app, whose
    # traceback is worth more than one line. The one-line summary still comes last.
    traceback.print_exception(exc)
    return AppImportError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}")


def _app_for(args: argparse.Namespace, *, need_broker: bool, need_store: bool) -> TaskQueue:
    """The ``--app`` app, else one configured by the environment; refuses the embedded
    broker and store where another process would have to share them."""
    app = load_app(args.app) if args.app else TaskQueue()
    # Imported here: only the CLI needs to know which implementations live in-process.
    from taskq.brokers.memory import MemoryBroker
    from taskq.stores.memory import MemoryStore

    if need_broker and isinstance(app.broker, MemoryBroker):
        raise ConfigurationError(
            "the broker is the embedded memory://, which lives inside one process and "
            "cannot be reached from this one: set TASKQ_BROKER_URL "
            "(e.g. amqp://guest:guest@127.0.0.1:5672/) or pass --app"
        )
    if need_store and isinstance(app.store, MemoryStore):
        raise ConfigurationError(
            "the status store is the embedded memory://, which no other process writes "
            "to: set TASKQ_STORE_URL (e.g. redis://127.0.0.1:6379/0) or pass --app"
        )
    return app


# -- commands -----------------------------------------------------------------------


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


def cmd_send(args: argparse.Namespace) -> int:
    app = _app_for(args, need_broker=True, need_store=args.wait is not None)
    return asyncio.run(_send(app, args))


async def _send(app: TaskQueue, args: argparse.Namespace) -> int:
    try:
        handle = await app.send(args.name, args.args, args.kwargs, task_id=args.task_id)
        print(handle.id, flush=True)
        if args.wait is None:
            return RET_OK
        try:
            value = await handle.result(timeout=args.wait)
        except TaskFailed as exc:
            _error(str(exc))
            return RET_FAILED
        except TimeoutError as exc:  # ResultTimeout
            _error(str(exc))
            return RET_TIMEOUT
        print(json.dumps(value))
        return RET_OK
    finally:
        await app.close()


def cmd_status(args: argparse.Namespace) -> int:
    app = _app_for(args, need_broker=False, need_store=True)
    status = asyncio.run(_get_status(app, args.task_id))
    if status is None:
        _error(f"no task with id {args.task_id!r} in the status store (unknown, or expired)")
        return RET_NOT_FOUND
    print(status.model_dump_json(indent=2) if args.json else describe(status))
    return RET_OK


async def _get_status(app: TaskQueue, task_id: str) -> TaskStatus | None:
    # Only the store: asking how a task went must work while the broker is down.
    try:
        await app.store.connect()
        return await app.store.get(task_id)
    finally:
        await app.store.close()


def describe(status: TaskStatus) -> str:
    """A status for people: one field a line, the traceback indented below."""
    rows: list[tuple[str, object]] = [
        ("task", status.id),
        ("name", status.name),
        ("state", status.state.value),
        ("attempts", status.attempts),
        ("created", status.created_at),
        ("started", status.started_at),
        ("finished", status.finished_at),
    ]
    if status.started_at and status.finished_at:
        took = (status.finished_at - status.started_at).total_seconds()
        rows.append(("took", f"{took:.3f}s"))
    if status.state.finished and status.error is None:
        rows.append(("result", json.dumps(status.result)))
    if status.error is not None:
        rows.append(("error", f"{status.error.type}: {status.error.message}"))
    lines = [f"{key:<9} {'-' if value is None else value}" for key, value in rows]
    if status.error is not None and status.error.traceback:
        lines.extend("  " + line for line in status.error.traceback.rstrip().splitlines())
    return "\n".join(lines)


# -- dead letters -------------------------------------------------------------------


def cmd_dead_list(args: argparse.Namespace) -> int:
    app = _app_for(args, need_broker=True, need_store=False)
    letters = asyncio.run(_closing(app, app.dead_letters(task=args.task, limit=args.limit)))
    if args.json:
        print(json.dumps([_dead_json(letter) for letter in letters], indent=2))
    else:
        for letter in letters:
            print(describe_dead(letter))
    return RET_OK


def cmd_dead_requeue(args: argparse.Namespace) -> int:
    # The store too: each task's status is reset where the workers will read it.
    app = _app_for(args, need_broker=True, need_store=True)
    requeued = asyncio.run(_closing(app, app.requeue_dead(task=args.task, ids=args.ids)))
    print(f"requeued {_dead_letters(len(requeued))}")
    for letter in requeued:
        print(f"{letter.task_id}  {letter.task}")
    missing = sorted(set(args.ids) - {letter.task_id for letter in requeued})
    if missing:
        _error(
            "no dead letter to requeue with task id "
            f"{', '.join(map(repr, missing))} (none, or none with a task to route it by)"
        )
        return RET_NOT_FOUND
    return RET_OK


def cmd_dead_purge(args: argparse.Namespace) -> int:
    app = _app_for(args, need_broker=True, need_store=False)
    purged = asyncio.run(_closing(app, app.purge_dead()))
    print(f"purged {_dead_letters(purged)}")
    return RET_OK


async def _closing(app: TaskQueue, call: Awaitable[T]) -> T:
    try:
        return await call
    finally:
        await app.close()


def describe_dead(letter: DeadLetter) -> str:
    """A dead letter for people, on one line: task id, task, when (UTC), reason; ``-``
    where the message does not say."""
    when = letter.dead_at.isoformat(timespec="seconds") if letter.dead_at else "-"
    reason = " ".join(letter.reason.split())
    return f"{letter.task_id or '-'}  {letter.task or '-'}  {when}  {reason}"


def _dead_json(letter: DeadLetter) -> dict[str, Any]:
    return {
        "id": letter.task_id,
        "task": letter.task,
        "reason": letter.reason,
        "dead_at": letter.dead_at.isoformat() if letter.dead_at else None,
        "queue": letter.queue,
    }


def _dead_letters(count: int) -> str:
    return f"{count} dead letter{'' if count == 1 else 's'}"


# -- the command line ---------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(RET_USAGE, f"{self.prog}: error: {message}\n")


def _json_array(text: str) -> list[Any]:
    value = _json(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"must be a JSON array, e.g. '[1, 2]', not {text!r}")
    return value


def _json_object(text: str) -> dict[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, e.g. '{{}}', not {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number, not {text!r}")
    return value


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON ({exc}): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    logging_options = _Parser(add_help=False)
    group = logging_options.add_argument_group("logging (to stderr)")
    group.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default=None,
        help="default: info for worker, warning for the others",
    )
    group.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="auto",
        help="console on a terminal, JSON lines otherwise (default: auto)",
    )
    app_option = _Parser(add_help=False)
    app_option.add_argument(
        "--app",
        metavar="APP_PATH",
        help="use this app ('module:attribute') instead of one built from TASKQ_* variables",
    )

    parser = _Parser(prog="taskq", description="Python tasks on RabbitMQ.")
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")

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

    send = commands.add_parser(
        "send", parents=[logging_options, app_option], help="send a task by name, print its id"
    )
    send.add_argument("name", metavar="NAME", help="the task's name, e.g. emails.send")
    send.add_argument(
        "--args", type=_json_array, default=[], help="positional arguments as a JSON array"
    )
    send.add_argument(
        "--kwargs", type=_json_object, default={}, help="keyword arguments as a JSON object"
    )
    send.add_argument(
        "--task-id", metavar="ID", help="an idempotency key: an id already known is not sent again"
    )
    send.add_argument(
        "--wait",
        type=float,
        metavar="SECONDS",
        help="wait for the outcome and print the result as JSON",
    )
    send.set_defaults(run=cmd_send, default_level="warning")

    status = commands.add_parser(
        "status", parents=[logging_options, app_option], help="show what the store knows of a task"
    )
    status.add_argument("task_id", metavar="TASK_ID")
    status.add_argument("--json", action="store_true", help="print the TaskStatus as JSON")
    status.set_defaults(run=cmd_status, default_level="warning")

    dead = commands.add_parser("dead", help="list, requeue or purge the dead letters")
    dead_commands = dead.add_subparsers(title="commands", required=True, metavar="COMMAND")
    dead_list = dead_commands.add_parser(
        "list",
        parents=[logging_options, app_option],
        help="print dead letters, oldest first: id, task, when, reason",
    )
    dead_list.add_argument("--task", metavar="NAME", help="only the dead letters of this task")
    dead_list.add_argument(
        "--limit", type=_positive_int, default=100, metavar="N", help="at most N (default: 100)"
    )
    dead_list.add_argument("--json", action="store_true", help="print them as a JSON array")
    dead_list.set_defaults(run=cmd_dead_list, default_level="warning")
    requeue = dead_commands.add_parser(
        "requeue",
        parents=[logging_options, app_option],
        help="send dead letters back to their task queues, their statuses reset to queued",
    )
    which = requeue.add_mutually_exclusive_group()
    which.add_argument("--task", metavar="NAME", help="the dead letters of this task")
    which.add_argument(  # a default makes it optional, as a mutually exclusive one must be
        "ids", nargs="*", default=[], metavar="ID", help="the dead letters of these task ids"
    )
    requeue.set_defaults(run=cmd_dead_requeue, default_level="warning")
    purge = dead_commands.add_parser(
        "purge", parents=[logging_options, app_option], help="delete every dead letter"
    )
    purge.set_defaults(run=cmd_dead_purge, default_level="warning")
    return parser


def _error(message: str) -> None:
    """One line on stderr, whatever the message holds."""
    print(f"taskq: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # to start the same command again (`_replace_process`)
    level = args.log_level or args.default_level
    configure_logging(
        level=level,
        fmt=args.log_format,
        # A worker's log shows the driver's reconnects; send and status answer in one
        # line, and the driver's own account of a failed connect would only repeat it.
        drivers_level=level if args.run is cmd_worker or level == "debug" else "critical",
    )
    try:
        code: int = args.run(args)
        return code
    except AppImportError as exc:
        _error(str(exc))
        return RET_IMPORT
    except (BrokerConnectionError, StoreError) as exc:
        _error(str(exc))
        return RET_CONNECT
    except TaskqError as exc:
        _error(str(exc))
        return RET_ERROR
    except KeyboardInterrupt:
        return RET_INTERRUPTED
    except BrokenPipeError:  # `taskq send ... | head -1`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return RET_OK
