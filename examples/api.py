"""An HTTP API that sends tasks by name and reports their status (FastAPI).

    .venv/bin/pip install -e '.[examples]'
    export TASKQ_BROKER_URL=amqp://guest:guest@127.0.0.1:5672/
    export TASKQ_STORE_URL=redis://127.0.0.1:6379/0
    .venv/bin/uvicorn examples.api:app

    curl -X POST 'http://127.0.0.1:8000/emails/0b6e6c1a-8d1e-4b7e-9f2a-8c3b1f1f3c11?subject=hi'
    curl http://127.0.0.1:8000/tasks/<task_id>
    curl -X POST http://127.0.0.1:8000/tasks/<task_id>/cancel

It never imports the task code (``workers/``): it only knows the task names and their
arguments, the way a service in another repository or language would. A worker
(``taskq worker workers.emails:app``) runs the tasks.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, HTTPException, Request

from taskq import TaskQueue, TaskStatus, UnknownTask


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Built at startup, not at import: the TASKQ_* variables are read when the server
    # starts, and the connections live exactly as long as the server.
    async with TaskQueue() as queue:
        app.state.queue = queue
        yield


app = FastAPI(title="taskq example API", lifespan=lifespan)


def _queue(request: Request) -> TaskQueue:
    queue: TaskQueue = request.app.state.queue
    return queue


@app.post("/emails/{user_id}", status_code=202)
async def send_email(
    user_id: uuid.UUID, request: Request, subject: str = "Welcome!"
) -> dict[str, str]:
    """Queue an email; the answer carries the task id to ask about it later."""
    handle = await _queue(request).send("emails.send", args=[user_id, subject])
    return {"task_id": handle.id}


@app.get("/tasks/{task_id}")
async def task_status(task_id: str, request: Request) -> TaskStatus:
    status = await _queue(request).handle(task_id).status()
    if status is None:
        raise HTTPException(status_code=404, detail=f"no task {task_id}")
    return status


@app.post("/tasks/{task_id}/cancel")
async def cancel_task(task_id: str, request: Request) -> dict[str, bool]:
    """Cancel by id, knowing nothing of the task: ``cancelled`` is false when it had
    already finished (or is a sync task that is running)."""
    try:
        cancelled = await _queue(request).cancel(task_id)
    except UnknownTask:
        raise HTTPException(status_code=404, detail=f"no task {task_id}") from None
    return {"cancelled": cancelled}
