"""The app of the broadcast fault scenario: ``python -m taskq worker
tests.faults.broadcast_app:app``. Its one task counts each run in the run counter
(``TASKQ_FAULT_COUNTER_URL``) under ``<key>:<pid>``: which process ran a call, and how
often, survives the processes."""

from __future__ import annotations

import os

from taskq import TaskQueue
from tests.faults.fault_app import RUNS_KEY, counter

app = TaskQueue()

#: The broadcast task's name (the scenario deletes its fanout exchange afterwards).
BROADCAST = "fault.broadcast"


@app.task(name=BROADCAST, broadcast=True)
async def broadcast(key: str) -> int:
    return int(await counter().hincrby(RUNS_KEY, f"{key}:{os.getpid()}", 1))
