"""Logging for the ``taskq`` command, and only for it: the library never configures logging.

One pipeline for everything a worker process logs: taskq's structlog events and the
standard library's records (aio-pika, aiormq, redis) go through the same processors and
come out on stderr in one format, either

- ``console``: aligned, coloured key=value lines for a person at a terminal, or
- ``json``: one JSON object per line, for a log collector.

``auto`` (the default) picks ``console`` when stderr is a terminal and ``json``
otherwise, so ``taskq worker ... 2>&1 | jq`` and a container's log driver both get JSON.

An application embedding taskq configures structlog itself, the way it likes; this
module is what the CLI does, usable as a starting point:

    configure_logging(level="info", fmt="auto")
"""

from __future__ import annotations

import logging
import sys
from typing import Literal, TextIO

import structlog
from structlog.typing import Processor

from taskq.logs import LevelCheckedLogger

LogFormat = Literal["auto", "console", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("auto", "console", "json")
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

#: The drivers' stdlib loggers, whose level ``drivers_level`` sets.
DRIVER_LOGGERS = ("aio_pika", "aiormq", "pamqp", "redis")


def configure_logging(
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    *,
    drivers_level: str | None = None,
) -> None:
    """Route structlog and stdlib logging through one handler on ``stream`` (stderr).

    ``drivers_level`` (default: ``level``) sets aio-pika's, aiormq's and redis's own
    loggers apart: a one-shot command translates their errors into its one-line error
    and can silence them. Replaces the root logger's handlers: call it once, at start.
    """
    stream = sys.stderr if stream is None else stream
    numeric_level = _level(level)
    console = fmt == "console" or (fmt == "auto" and stream.isatty())

    # Applied to both kinds of record before rendering: structlog events get them in
    # structlog.configure below, stdlib records as the formatter's foreign_pre_chain.
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.stdlib.PositionalArgumentsFormatter(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    renderer: Processor
    if console:
        renderer = structlog.dev.ConsoleRenderer(colors=stream.isatty())
        render_chain: list[Processor] = [renderer]
    else:
        # Tracebacks become a string field of the one JSON line, never extra lines.
        render_chain = [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]

    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        # Returns before any processor for a level the logger does not log.
        wrapper_class=LevelCheckedLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render_chain],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric_level)
    for name in DRIVER_LOGGERS:
        logging.getLogger(name).setLevel(_level(drivers_level or level))


def _level(name: str) -> int:
    return logging.getLevelNamesMapping()[name.upper()]
