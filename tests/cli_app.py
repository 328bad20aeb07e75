"""The app that ``taskq worker tests.cli_app:app`` runs in tests/test_cli.py, configured
by the TASKQ_* variables of the subprocess."""

from __future__ import annotations

import asyncio
import os
import time

from taskq import TaskQueue

app = TaskQueue()


@app.task(name="cli.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="cli.fail")
def fail(message: str) -> None:
    raise RuntimeError(message)


@app.task(name="cli.sleep")
async def sleep(seconds: float) -> float:
    await asyncio.sleep(seconds)
    return seconds


@app.task(name="cli.block")
def block(seconds: float) -> float:
    time.sleep(seconds)  # a sync task stuck in a call that cannot be cancelled
    return seconds


@app.task(name="cli.overrun", timeout=0.5, max_retries=0)
def overrun(seconds: float) -> float:
    time.sleep(seconds)  # past its time limit: the worker process is replaced
    return seconds


@app.task(name="cli.flaky", max_retries=0)
def flaky(flag: str) -> str:
    if not os.path.exists(flag):  # fails until someone fixes it, as dead letters are
        raise RuntimeError(f"{flag} is missing")
    return "fixed"


@app.task(name="cli.loop")
async def loop_module() -> str:
    """The module of the event loop the worker runs on (``uvloop`` under taskq worker)."""
    return type(asyncio.get_running_loop()).__module__


#: Every task name above, for the tests' clean-up.
TASK_NAMES = list(app.tasks)
