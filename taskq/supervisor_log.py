"""The supervisor's log lines, written without structlog.

``taskq worker --processes N``'s supervisor imports only the standard library (it
stays a few MiB: the memory of a pool is the supervisor's and its children's, issue
14), and structlog alone brings asyncio and ~13 MiB with it. Its lines come out as
the rest of the command's do (:mod:`taskq.logconfig`): one JSON object per line with
the fields, then ``event``, ``logger``, ``level`` and ``timestamp``; or, for a person at
a terminal, ``timestamp [level] event [logger] key=value ...``.

    configure(level="info", fmt="auto")
    log = LineLogger("taskq.supervisor")
    log.info("worker process started", pid=123, slot=0)
"""

from __future__ import annotations

import json
import sys
import time

TYPE_CHECKING = False  # typing, datetime: not imported by the supervisor for this
if TYPE_CHECKING:
    from typing import TextIO

#: Level names and their order, as :data:`taskq.logconfig.LOG_LEVELS`.
_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40, "critical": 50}


class _Config:
    level = _LEVELS["info"]
    console = False
    stream: TextIO | None = None  # None: sys.stderr as it is when a line is written


_config = _Config()


def configure(level: str = "info", fmt: str = "auto", stream: TextIO | None = None) -> None:
    """Lines below ``level`` are dropped; ``fmt`` is ``auto`` (console on a terminal,
    else JSON), ``console`` or ``json``, as ``--log-format``."""
    _config.level = _LEVELS[level.lower()]
    _config.stream = stream
    out = sys.stderr if stream is None else stream
    _config.console = fmt == "console" or (fmt == "auto" and out.isatty())


class LineLogger:
    """``info`` / ``warning`` / ``error`` with an event and its fields, like taskq's
    structlog loggers."""

    def __init__(self, name: str) -> None:
        self.name = name

    def debug(self, event: str, **fields: object) -> None:
        self._emit("debug", event, fields)

    def info(self, event: str, **fields: object) -> None:
        self._emit("info", event, fields)

    def warning(self, event: str, **fields: object) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: object) -> None:
        self._emit("error", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, object]) -> None:
        if _LEVELS[level] < _config.level:
            return
        now = time.time()
        timestamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{_micros(now):06d}Z"
        if _config.console:
            pairs = " ".join(f"{key}={value}" for key, value in fields.items())
            line = f"{timestamp} [{level:<9}] {event:<30} [{self.name}] {pairs}".rstrip()
        else:
            record = {**fields, "event": event, "logger": self.name, "level": level}
            line = json.dumps({**record, "timestamp": timestamp}, default=str)
        stream = sys.stderr if _config.stream is None else _config.stream
        try:
            stream.write(line + "\n")
            stream.flush()
        except (OSError, ValueError):  # a closed stderr must not stop the supervisor
            pass


def _micros(now: float) -> int:
    return min(999_999, round((now % 1) * 1_000_000))
