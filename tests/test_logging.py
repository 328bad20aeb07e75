"""Logging: only the ``taskq`` command configures it; a worker's lines, its own and the
drivers', come out in one format, and every line of a task's life says which task,
which attempt, how long and which process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from taskq import TaskQueue
from taskq.errors import TaskFailed
from tests.deployment import ROOT, environment, run_python, tear_down
from tests.logging_app import TASK_NAMES

#: The events of a task's life, and those of them that follow a run (with a duration).
TASK_EVENTS = {
    "task started",
    "task succeeded",
    "task failed; retrying",
    "task failed",
    "dead-lettered",
}
TIMED_EVENTS = TASK_EVENTS - {"task started"}


async def test_importing_taskq_leaves_logging_and_structlog_unconfigured() -> None:
    probe = (
        "import logging, structlog\n"
        "import taskq, taskq.worker, taskq.cli, taskq.settings, taskq.logconfig\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert logging.getLogger().level == logging.WARNING\n"
        "assert not structlog.is_configured()\n"
        "print('untouched')\n"
    )

    ran = await run_python("-c", probe, env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.lines == ["untouched"]


@pytest.mark.parametrize(
    ("tty", "expect_json"), [(True, False), (False, True)], ids=["terminal", "pipe"]
)
async def test_auto_format_is_the_console_on_a_terminal_and_json_lines_otherwise(
    tty: bool, expect_json: bool
) -> None:
    probe = (
        "import io, logging, structlog\n"
        "from taskq.logconfig import configure_logging\n"
        "class Stream(io.StringIO):\n"
        f"    def isatty(self): return {tty}\n"
        "stream = Stream()\n"
        "configure_logging(level='info', fmt='auto', stream=stream)\n"
        "structlog.get_logger('taskq.test').info('hello from structlog', n=1)\n"
        "logging.getLogger('aio_pika.test').warning('hello from %s', 'stdlib')\n"
        "print(stream.getvalue(), end='')\n"
    )

    ran = await run_python("-c", probe, env=environment())

    assert ran.returncode == 0, ran.stderr
    assert len(ran.lines) == 2, ran.stdout
    if expect_json:
        structlog_line, stdlib_line = (json.loads(line) for line in ran.lines)
        assert structlog_line["event"] == "hello from structlog"
        assert stdlib_line["event"] == "hello from stdlib"
        assert stdlib_line["logger"] == "aio_pika.test"
    else:
        assert "\x1b[" in ran.stdout  # coloured, for a person
        assert "hello from structlog" in ran.lines[0]
        assert "hello from stdlib" in ran.lines[1]
        for line in ran.lines:
            with pytest.raises(ValueError):
                json.loads(line)


async def test_a_json_worker_logs_every_task_line_with_its_id_name_attempt_duration_and_pid(
    amqp_url: str, redis_url: str, exchange: str, tmp_path: Path
) -> None:
    env = environment(broker_url=amqp_url, store_url=redis_url, exchange=exchange)
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    log_file = tmp_path / "worker.log"
    try:
        with log_file.open("wb") as stderr:  # a file, not a pipe: never blocks the worker
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taskq", "worker", "tests.logging_app:app",
                "--log-format", "json", "--log-level", "debug", "--concurrency", "2",
                cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
            )  # fmt: skip
        try:
            await _until_logged(log_file, "worker started", proc)
            # Given a task that succeeds and one retried once, then failed
            assert await (await app.send("logging.add", [1, 2])).result(timeout=20) == 3
            failing = await app.send("logging.fail", ["boom"])
            with pytest.raises(TaskFailed):
                await failing.result(timeout=20)
            await _until_logged(log_file, "dead-lettered", proc)
        finally:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 30)
    finally:
        await app.close()
        await tear_down(amqp_url, redis_url, exchange, TASK_NAMES)

    # Then every line is one JSON object
    lines = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    started = next(line for line in lines if line["event"] == "worker started")
    pid = int(started["pid"])
    # and every task line says which task, which attempt, which process, how long
    task_lines = [line for line in lines if line["event"] in TASK_EVENTS]
    assert {line["event"] for line in task_lines} == TASK_EVENTS, task_lines
    for line in task_lines:
        assert line["task"] in TASK_NAMES, line
        assert line["task_id"], line
        assert line["attempt"] >= 1, line
        assert line["pid"] == pid, line
        if line["event"] in TIMED_EVENTS:
            assert line["duration"] >= 0, line
    attempts = [line["attempt"] for line in task_lines if line["task_id"] == failing.id]
    assert sorted(set(attempts)) == [1, 2]
    failed = next(line for line in task_lines if line["event"] == "task failed")
    assert "RuntimeError: boom" in failed["exception"]  # the traceback, inside the line
    # and the drivers' stdlib records came through the same pipeline
    driver_lines = [line for line in lines if line.get("logger", "").startswith("aio")]
    assert driver_lines, "no aio-pika / aiormq line in the log"
    for line in driver_lines:
        assert {"event", "level", "timestamp"} <= line.keys(), line


async def _until_logged(log_file: Path, event: str, proc: Any) -> None:
    deadline = time.monotonic() + 20
    while event not in _read(log_file):
        assert proc.returncode is None, f"worker exited early:\n{_read(log_file)}"
        assert time.monotonic() < deadline, f"no {event!r} logged:\n{_read(log_file)}"
        await asyncio.sleep(0.05)


def _read(log_file: Path) -> str:
    return log_file.read_text()  # a small local file: no need for a thread
