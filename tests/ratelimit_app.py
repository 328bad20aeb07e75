"""An app for the rate limit test that runs workers as real subprocesses (``python -m
taskq worker tests.ratelimit_app:app``), configured by the TASKQ_* environment
variables."""

from __future__ import annotations

from taskq import TaskQueue

app = TaskQueue()


@app.task(name="rate.tick", rate_limit="20/s")
async def tick(n: int) -> int:
    return n
