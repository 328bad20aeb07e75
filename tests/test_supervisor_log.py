"""The supervisor's log lines (taskq.supervisor_log) look like the rest of the
command's (taskq.logconfig): JSON with the same keys, or a console line; below the
level, nothing."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator

import pytest

from taskq.supervisor_log import LineLogger, configure


@pytest.fixture(autouse=True)
def _restore() -> Iterator[None]:
    yield
    configure()  # the defaults: info, auto, stderr


def test_a_json_line_has_the_fields_then_event_logger_level_timestamp() -> None:
    out = io.StringIO()
    configure(level="info", fmt="json", stream=out)

    LineLogger("taskq.supervisor").info("worker process started", pid=12, slot=0)

    record = json.loads(out.getvalue())
    assert list(record) == ["pid", "slot", "event", "logger", "level", "timestamp"]
    assert record["event"] == "worker process started" and record["level"] == "info"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", record["timestamp"])


def test_a_console_line_and_the_level_filter() -> None:
    out = io.StringIO()
    configure(level="warning", fmt="console", stream=out)
    log = LineLogger("taskq.supervisor")

    log.info("not shown", pid=1)
    log.warning("worker process died; restarting", pid=7, signal="SIGKILL")

    (line,) = out.getvalue().splitlines()
    assert "[warning  ] worker process died; restarting [taskq.supervisor]" in line
    assert line.endswith("pid=7 signal=SIGKILL")
