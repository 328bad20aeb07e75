"""``python -m taskq.supervise CONFIG``: the supervisor of ``taskq worker --processes N``
in a process that imported only the standard library.

``taskq worker`` parses its flags and settings (pydantic, the CLI) and then replaces
itself with this (``os.execv``: same pid, same stdio, same environment), so what the
command imported does not stay in the supervisor for the life of the pool. CONFIG is
one JSON object (:func:`supervise_command` writes it): the children's command line,
the supervisor's options and the log's level and format.
"""

from __future__ import annotations

import json
import os
import sys

from taskq.supervisor import Supervisor
from taskq.supervisor_log import configure

TYPE_CHECKING = False  # typing: not imported by the supervisor for this
if TYPE_CHECKING:
    from typing import Any


def supervise_command(
    command: list[str],
    *,
    processes: int,
    health_file: str | None,
    health_interval: float,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
    log_format: str,
    fork: bool,
) -> list[str]:
    """The argv that runs a supervisor with these options."""
    config = {
        "command": command,
        "processes": processes,
        "health_file": health_file,
        "health_interval": health_interval,
        "metrics_port": metrics_port,
        "metrics_host": metrics_host,
        "log_level": log_level,
        "log_format": log_format,
        "fork": fork,
    }
    return [sys.executable, "-m", "taskq.supervise", json.dumps(config)]


def run(config: dict[str, Any]) -> int:
    """Supervise as ``config`` says; the supervisor's exit code."""
    configure(level=config["log_level"], fmt=config["log_format"])
    options: dict[str, Any] = {
        "processes": config["processes"],
        "health_file": config["health_file"],
        "health_interval": config["health_interval"],
        "fork": config["fork"],
    }
    if config["metrics_port"] is None:
        return Supervisor(config["command"], **options).run()
    from taskq.metrics import ChildrenMetrics

    # One port for every child: they write their figures to files, the supervisor
    # serves the sum (a dead child's counters included).
    with ChildrenMetrics(port=config["metrics_port"], host=config["metrics_host"]) as served:
        env = {**os.environ, **served.environment()}
        return Supervisor(config["command"], env=env, on_exit=served.child_exited, **options).run()


if __name__ == "__main__":
    sys.exit(run(json.loads(sys.argv[1])))
