"""What every ``taskq`` command shares: exit codes, loading an app, one-line errors,
and argument types."""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from taskq.app import TaskQueue
from taskq.errors import BrokerConnectionError, ConfigurationError, StoreError, TaskqError

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


def guarded(run: Callable[[], int]) -> int:
    """``run()``'s exit code, or the code and one line on stderr for what it raised:
    a command's, and a forked worker's (:mod:`taskq.zygote`), which has no ``main``."""
    try:
        return run()
    except AppImportError as exc:
        error(str(exc))
        return RET_IMPORT
    except (BrokerConnectionError, StoreError) as exc:
        error(str(exc))
        return RET_CONNECT
    except TaskqError as exc:
        error(str(exc))
        return RET_ERROR
    except KeyboardInterrupt:
        return RET_INTERRUPTED
    except BrokenPipeError:  # `taskq send ... | head -1`: the reader left, not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return RET_OK


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


def app_for(args: argparse.Namespace, *, need_broker: bool, need_store: bool) -> TaskQueue:
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
            "to: set TASKQ_STORE_URL (e.g. redis://127.0.0.1:6379/0 or "
            "postgresql://user@host:5432/db) or pass --app"
        )
    return app


async def closing(app: TaskQueue, call: Awaitable[T]) -> T:
    try:
        return await call
    finally:
        await app.close()


# -- output and arguments ----------------------------------------------------------


def error(message: str) -> None:
    """One line on stderr, whatever the message holds."""
    print(f"taskq: error: {' '.join(message.split())}", file=sys.stderr, flush=True)


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(RET_USAGE, f"{self.prog}: error: {message}\n")


def json_array(text: str) -> list[Any]:
    value = _json(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"must be a JSON array, e.g. '[1, 2]', not {text!r}")
    return value


def json_object(text: str) -> dict[str, Any]:
    value = _json(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object, e.g. '{{}}', not {text!r}")
    return value


def positive_int(text: str) -> int:
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
