"""Quiet by default: an application that configured no logging hears nothing from taskq
on stdout and nothing below WARNING; one that configured logging (stdlib or structlog)
gets taskq's lines through its own configuration. The ``taskq`` command's pipeline is
tested in test_logging.py."""

from __future__ import annotations

import ast
import json
from pathlib import Path

from tests.deployment import ROOT, environment, run_python

#: A small application on the embedded backend: sync and async tasks, a batch, a
#: workflow and a cancel. ``FAIL=1`` adds a task that fails after one retry.
APPLICATION = """
import asyncio, os, sys
import taskq
from taskq import TaskFailed, TaskQueue, Worker

app = TaskQueue(broker="memory://", store="memory://")

@app.task(name="shop.add")
async def add(x: int, y: int) -> int:
    return x + y

@app.task(name="shop.total")
def total(values: list[int]) -> int:
    return sum(values)

@app.task(name="shop.boom", max_retries=1, retry_backoff=0.05, retry_jitter=False)
async def boom() -> None:
    raise RuntimeError("boom")

async def main() -> None:
    async with app, Worker(app, concurrency=4):
        results = [await (await add.delay(1, 2)).result(timeout=10)]
        handles = await add.send_many([((n, n), {}) for n in range(20)])
        results += [await h.result(timeout=10) for h in handles]
        flow = taskq.chord([add.s(1, 1), add.s(2, 2)], total.s())
        results.append(await (await flow.delay()).result(timeout=10))
        later = await add.send((5, 5), countdown=60)
        await later.cancel()
        if os.environ.get("FAIL") == "1":
            try:
                await (await boom.delay()).result(timeout=10)
            except TaskFailed:
                results.append("failed")
    print(results[0], results[-1])

asyncio.run(main())
"""


async def test_an_application_without_logging_configured_prints_only_its_own_output() -> None:
    ran = await run_python("-c", APPLICATION, env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "3 6\n"  # the application's own line, nothing of taskq's
    assert ran.stderr == ""


async def test_without_logging_configured_only_warnings_and_errors_reach_stderr() -> None:
    ran = await run_python("-c", APPLICATION, env={**environment(), "FAIL": "1"})

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "3 failed\n"
    # Python's last-resort handler: WARNING and above, on stderr, the message alone.
    lines = [line for line in ran.stderr.splitlines() if not line.startswith((" ", "Traceback"))]
    assert lines[0].startswith("task failed; retrying "), ran.stderr
    assert "task=shop.boom" in lines[0] and "attempt=1" in lines[0]
    assert any(line.startswith("task failed ") for line in lines), ran.stderr
    assert "RuntimeError: boom" in ran.stderr  # the traceback, handed over as exc_info
    for quiet in ("worker started", "task started", "task succeeded", "cancelled"):
        assert quiet not in ran.stderr


async def test_the_applications_stdlib_logging_configuration_decides() -> None:
    # Given an application that logs INFO and up as JSON through the standard library
    configured = (
        "import json, logging, sys\n"
        "class Json(logging.Formatter):\n"
        "    def format(self, record):\n"
        "        return json.dumps({'logger': record.name, 'level': record.levelname,\n"
        "                           'message': record.getMessage(),\n"
        "                           'fields': getattr(record, 'taskq', None)}, default=str)\n"
        "handler = logging.StreamHandler(sys.stderr)\n"
        "handler.setFormatter(Json())\n"
        "logging.basicConfig(level=logging.INFO, handlers=[handler])\n"
    )

    ran = await run_python("-c", configured + APPLICATION, env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "3 6\n"
    records = [json.loads(line) for line in ran.stderr.splitlines()]
    # Then taskq's INFO lines arrive under their module's logger, the fields attached
    succeeded = [r for r in records if r["message"].startswith("task succeeded ")]
    assert len(succeeded) == 1 + 20 + 3, records
    assert {r["logger"] for r in succeeded} == {"taskq.worker"}
    first = succeeded[0]
    assert first["level"] == "INFO"
    assert first["fields"]["task"] == "shop.add" and first["fields"]["attempt"] == 1
    assert f"task_id={first['fields']['task_id']}" in first["message"]
    # and the DEBUG ones stay out, as the application asked
    assert not [r for r in records if r["level"] == "DEBUG"]
    assert any(r["message"].startswith("worker started ") for r in records)


async def test_an_application_that_configured_structlog_gets_taskqs_lines_through_it() -> None:
    configured = (
        "import sys, structlog\n"
        "structlog.configure(processors=[structlog.processors.JSONRenderer()],\n"
        "                    logger_factory=structlog.PrintLoggerFactory(sys.stderr))\n"
    )

    ran = await run_python("-c", configured + APPLICATION, env=environment())

    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "3 6\n"
    events = [json.loads(line) for line in ran.stderr.splitlines()]
    started = [e for e in events if e["event"] == "task started"]  # debug: structlog's choice
    assert len(started) == 1 + 20 + 3
    assert {e["task"] for e in started} == {"shop.add", "shop.total"}


def test_every_module_of_taskq_logs_through_taskq_logs() -> None:
    """``structlog.get_logger`` in the library would print to stdout in an application
    that configured nothing: every module uses :func:`taskq.logs.get_logger`."""
    offenders = []
    for path in sorted((ROOT / "taskq").rglob("*.py")):
        if path.name in ("logs.py", "logconfig.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("get_logger", "getLogger", "wrap_logger", "PrintLogger")
                and isinstance(node.value, ast.Name)
                and node.value.id == "structlog"
            ):
                offenders.append(f"{Path(path).relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "use `from taskq.logs import get_logger` instead"
