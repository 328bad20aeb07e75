"""uvloop for taskq's own processes, and never behind an application's back."""

from __future__ import annotations

import asyncio
import subprocess
import sys

from taskq import loops


def test_loops_run_runs_on_uvloop_and_leaves_the_policy_alone() -> None:
    before = asyncio.get_event_loop_policy()

    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert loops.run(loop_module()).startswith("uvloop")
    assert loops.loop_name() == "uvloop"
    assert asyncio.get_event_loop_policy() is before


def test_using_the_library_installs_no_event_loop_policy() -> None:
    # A fresh interpreter: importing taskq, making an app and a worker, sending and
    # running a task on the embedded broker, all on the loop asyncio.run gives.
    code = """
import asyncio
from taskq import TaskQueue, Worker
app = TaskQueue()
@app.task
async def which() -> str:
    return type(asyncio.get_running_loop()).__module__
async def main():
    async with app, Worker(app):
        return await (await which.delay()).result(timeout=10)
module = asyncio.run(main())
print(module, type(asyncio.get_event_loop_policy()).__module__)
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    last = ran.stdout.strip().splitlines()[-1]  # after structlog's default output
    assert last.split() == ["asyncio.unix_events", "asyncio.unix_events"]
