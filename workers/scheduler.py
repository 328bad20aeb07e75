"""The ``scheduler`` worker pool of the example service (``examples/service``):

    .venv/bin/taskq worker workers.scheduler:app --concurrency 16

It builds the service's container from the same settings as the API (``SCHEDULER_*``,
see ``examples/service/settings.py``) and registers the tasks on its own ``scheduler``
app: the API's ``scheduler`` is another object, in another process, that only sends.
"""

from __future__ import annotations

import asyncio
import uuid

import structlog

from examples.service.container import ServiceContainer

app = ServiceContainer().scheduler

log = structlog.get_logger(__name__)


@app.task(name="scheduler.notifications.fire")
async def fire_notifications(user_ids: list[uuid.UUID], message: str) -> dict[str, int]:
    """Notify each user (here: pretend to); the arguments arrive validated, so the ids
    the API sent as strings are ``uuid.UUID`` again."""
    for user_id in user_ids:
        await asyncio.sleep(0.01)  # the push service's round trip
        log.info("notification sent", user_id=str(user_id), message=message)
    return {"notified": len(user_ids)}
