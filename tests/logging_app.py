"""The app ``taskq worker tests.logging_app:app`` runs in tests/test_logging.py: one
task that succeeds, one retried once and then failed, quickly; configured by the
TASKQ_* variables of the subprocess."""

from __future__ import annotations

from taskq import TaskQueue

app = TaskQueue()

TASK_NAMES = ["logging.add", "logging.fail"]


@app.task(name="logging.add")
async def add(x: int, y: int) -> int:
    return x + y


@app.task(name="logging.fail", max_retries=1, retry_backoff=0.1, retry_jitter=False)
def fail(message: str) -> None:
    raise RuntimeError(message)
