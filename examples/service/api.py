"""The service's HTTP API (FastAPI): it sends tasks by name and reports their status.

    .venv/bin/uvicorn examples.service.api:app

    curl -X POST http://127.0.0.1:8000/notifications \\
         -H 'content-type: application/json' \\
         -d '{"user_ids": ["0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11"], "message": "hi"}'
    curl http://127.0.0.1:8000/tasks/scheduler/<task_id>

``scheduler.notifications.fire`` and ``critical.payments.charge`` run in the worker
pools of ``workers/`` (``taskq worker workers.scheduler:app``, ``workers.critical:app``);
this module never imports them, it only knows their names and arguments. The
``internal`` app's tasks (``internal.audit.record``) run in this process, on a worker
started and stopped with the server.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

from examples.service.container import ServiceContainer
from taskq import TaskQueue, TaskStatus, Worker
from taskq.logconfig import configure_logging


@asynccontextmanager
async def lifespan(api: FastAPI) -> AsyncIterator[None]:
    # Built at startup, not at import: the settings are read when the server starts,
    # and the connections live exactly as long as the server. The internal worker
    # stops (finishing what runs, for up to `grace`) before the apps close. Logging is
    # the application's to configure (taskq logs nothing below WARNING otherwise): the
    # internal worker's lines go to stderr, beside uvicorn's, as `taskq worker` logs.
    configure_logging(level="info")
    container = ServiceContainer()
    async with container, Worker(container.internal, concurrency=8, grace=5.0):
        api.state.container = container
        yield


app = FastAPI(title="taskq example service", lifespan=lifespan)


# -- the apps, handed to routes the way a DI container's providers would ----------------


def _container(request: Request) -> ServiceContainer:
    container: ServiceContainer = request.app.state.container
    return container


def _critical(request: Request) -> TaskQueue:
    return _container(request).critical


def _scheduler(request: Request) -> TaskQueue:
    return _container(request).scheduler


def _internal(request: Request) -> TaskQueue:
    return _container(request).internal


Critical = Annotated[TaskQueue, Depends(_critical)]
Scheduler = Annotated[TaskQueue, Depends(_scheduler)]
Internal = Annotated[TaskQueue, Depends(_internal)]


# -- routes ------------------------------------------------------------------------------


class Notification(BaseModel):
    user_ids: list[uuid.UUID]
    message: str


class AuditEvent(BaseModel):
    event: str
    subject: str


class Queued(BaseModel):
    task_id: str


@app.post("/notifications", status_code=202)
async def fire_notifications(notification: Notification, scheduler: Scheduler) -> Queued:
    """Queue the notifications for the scheduler's workers; answer with the task id."""
    handle = await scheduler.send(
        "scheduler.notifications.fire", args=[notification.user_ids, notification.message]
    )
    return Queued(task_id=handle.id)


@app.post("/payments/{order_id}", status_code=202)
async def charge(order_id: uuid.UUID, amount_cents: int, critical: Critical) -> Queued:
    """Queue a charge on the critical app, whose workers no bulk work holds up."""
    handle = await critical.send("critical.payments.charge", args=[order_id, amount_cents])
    return Queued(task_id=handle.id)


@app.post("/audit", status_code=202)
async def audit(event: AuditEvent, internal: Internal) -> Queued:
    """Record an audit event in the background of this process, after the answer."""
    handle = await internal.send("internal.audit.record", args=[event.event, event.subject])
    return Queued(task_id=handle.id)


@app.get("/tasks/{app_name}/{task_id}")
async def task_status(app_name: str, task_id: str, request: Request) -> TaskStatus:
    """The status of a task sent through app ``app_name`` (critical, scheduler,
    internal): each app has its own status store."""
    try:
        queue = _container(request).app(app_name)
    except KeyError:
        raise HTTPException(status_code=404, detail=f"no app {app_name}") from None
    status = await queue.handle(task_id).status()
    if status is None:
        raise HTTPException(status_code=404, detail=f"no task {task_id} in {app_name}")
    return status
