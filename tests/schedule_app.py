"""The app that ``taskq scheduler tests.schedule_app:app`` runs in tests/test_schedules_cli.py,
configured by the TASKQ_* variables of the subprocess; ``SCHEDULE_APP_CASE`` picks a
broken variant (``bad-cron``, ``unknown-task``) to be refused at start."""

from __future__ import annotations

import os
from datetime import timedelta

from taskq import TaskQueue

app = TaskQueue()
CASE = os.environ.get("SCHEDULE_APP_CASE", "")


@app.periodic(every=timedelta(seconds=1), name="beat")
@app.task(name="sched.beat")
async def beat() -> str:
    return "ok"


if CASE != "every-only":
    app.schedule(beat, cron="30 2 * * *", name="nightly", timezone="Europe/Berlin", catch_up=True)
if CASE == "bad-cron":
    app.schedule(beat, cron="*/5 25 * * *", name="broken")
if CASE == "unknown-task":
    app.schedule("reports.missing", every=timedelta(minutes=5), name="orphan")
