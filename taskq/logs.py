"""How the library logs: quiet unless the application (or the ``taskq`` command) asks.

Every module of taskq takes its logger from here::

    log = get_logger(__name__)
    log.bind(task_id=task_id, task=name).info("task succeeded", duration=0.012)

What a line becomes depends on what the process configured, decided at each call:

- **structlog configured** (``structlog.configure(...)``, as the ``taskq`` command does
  in :mod:`taskq.logconfig`, or as an application does): the line goes through that
  configuration, exactly like ``structlog.get_logger(name)``.
- **nothing configured**: the line goes to the standard library's logger of the same
  name (``taskq.worker``, ``taskq.brokers.memory``...), so the application's
  ``logging`` configuration decides, as it does for any library. With none at all,
  Python prints only WARNING and above, on stderr: nothing lands in the program's own
  stdout. (structlog's own default, which printed every debug line to stdout, is never
  used: the library never configures structlog either.)

On the standard library path the message is the event followed by its fields as
``key=value`` (``task succeeded task_id=6f1c... task=emails.send duration=0.012``), the
fields also travel as a dict in the record's ``taskq`` attribute for a structured
formatter, and ``log.exception`` hands the traceback to the handler as ``exc_info``. A
line below the logger's effective level costs one ``isEnabledFor`` check: nothing is
copied or formatted.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog
import structlog.testing

__all__ = ["LevelCheckedLogger", "TaskqLogger", "get_logger"]

#: structlog's method names and the stdlib levels they log at.
_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}

#: Keys of an event dict the stdlib record takes as keyword arguments, not as fields.
_RECORD_KEYS = ("exc_info", "stack_info")


def get_logger(name: str) -> TaskqLogger:
    """The logger of module ``name``; see the module docstring for where lines go."""
    return TaskqLogger(name)


class TaskqLogger:
    """A structlog-style logger (``bind``, ``debug`` ... ``exception``) that picks its
    pipeline when it is used, not when it is made: modules make theirs at import time,
    long before the ``taskq`` command or the application configures anything."""

    __slots__ = ("_configured", "_name", "_stdlib")

    def __init__(self, name: str) -> None:
        self._name = name
        self._configured: Any = None
        self._stdlib: LevelCheckedLogger | None = None

    def __repr__(self) -> str:
        return f"<TaskqLogger {self._name}>"

    def _target(self) -> Any:
        if structlog.is_configured():
            if self._configured is None:
                # A lazy proxy: it follows a later structlog.configure() by itself.
                self._configured = structlog.get_logger(self._name)
            return self._configured
        if self._stdlib is None:
            self._stdlib = LevelCheckedLogger(
                logging.getLogger(self._name), processors=_PROCESSORS, context={}
            )
        return self._stdlib

    def bind(self, **fields: Any) -> Any:
        """A logger carrying ``fields`` on every line, from the pipeline in force now."""
        return self._target().bind(**fields)

    def debug(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().debug(event, *args, **fields)

    def info(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().info(event, *args, **fields)

    def warning(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().warning(event, *args, **fields)

    def error(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().error(event, *args, **fields)

    def exception(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().exception(event, *args, **fields)

    def critical(self, event: str, *args: Any, **fields: Any) -> Any:
        return self._target().critical(event, *args, **fields)


class LevelCheckedLogger(structlog.stdlib.BoundLogger):
    """structlog's stdlib wrapper that returns at once for a level its logger does not
    log, before the fields are even copied: a worker's per-task debug lines then cost
    next to nothing in an application that logs at WARNING. Also the ``taskq``
    command's wrapper class (:mod:`taskq.logconfig`): there, structlog's own
    ``filter_by_level`` ran only after the context was copied and every processor
    called, about 3% of a draining worker's CPU for its two lines a task."""

    def _proxy_to_logger(
        self, method_name: str, event: str | None = None, *event_args: str, **event_kw: Any
    ) -> Any:
        if not self._logger.isEnabledFor(
            _LEVELS.get(method_name, logging.CRITICAL)
        ) and not _capturing(self._processors):
            return None
        return super()._proxy_to_logger(method_name, event, *event_args, **event_kw)


def _capturing(processors: Any) -> bool:
    """Whether ``structlog.testing.capture_logs`` is on: it swaps the processors only,
    and a test capturing lines wants every one, whatever level a ``taskq`` command run
    earlier in the same process left on the stdlib loggers. It puts its ``LogCapture``
    last (after any processors it is given): one look, not a scan, since this runs for
    every line below the level, a worker's debug lines for each task among them."""
    return bool(processors) and isinstance(processors[-1], structlog.testing.LogCapture)


def _render(_logger: Any, _method: str, event_dict: dict[str, Any]) -> Any:
    """The last processor: ``(args, kwargs)`` for the stdlib logger's method."""
    record_kwargs = {key: event_dict.pop(key) for key in _RECORD_KEYS if key in event_dict}
    event = str(event_dict.pop("event", ""))
    message = " ".join([event, *(f"{key}={_value(value)}" for key, value in event_dict.items())])
    return (message,), {**record_kwargs, "extra": {"taskq": event_dict}}


def _value(value: Any) -> str:
    if isinstance(value, str) and value and value.isprintable() and " " not in value:
        return value
    return repr(value)


_PROCESSORS: list[Any] = [
    structlog.contextvars.merge_contextvars,  # what the application bound, e.g. a request id
    structlog.stdlib.PositionalArgumentsFormatter(),
    _render,
]
