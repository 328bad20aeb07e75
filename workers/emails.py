"""Tasks of the example deployment, configured by the environment:

    TASKQ_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/ \
    TASKQ_STORE_URL=redis://127.0.0.1:6379/0 \
    taskq worker workers.emails:app --concurrency 16 --tasks 'emails.*'

``emails.send`` is a sync function (it runs in the worker's thread pool, as blocking
SMTP client code would); ``reports.build`` is async (it runs on the event loop).
A worker started with ``--tasks 'reports.*'`` serves only the reports.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import structlog

from taskq import TaskQueue

app = TaskQueue()  # TASKQ_BROKER_URL, TASKQ_STORE_URL, TASKQ_EXCHANGE

log = structlog.get_logger(__name__)


@app.task(name="emails.send")
def send_email(user_id: uuid.UUID, subject: str) -> bool:
    """Send ``subject`` to the user (here: pretend to). The worker validates the
    arguments first, so a string sent by name arrives as a ``uuid.UUID``."""
    time.sleep(0.05)  # the SMTP round trip
    log.info("email sent", user_id=str(user_id), subject=subject)
    return True


@app.task(name="reports.build")
async def build_report(account_id: int, months: int = 12) -> dict[str, int]:
    """Build a usage report; the returned dict is the task's result, stored as JSON."""
    await asyncio.sleep(0.1)  # the database queries
    return {"account_id": account_id, "months": months, "rows": months * 31}
