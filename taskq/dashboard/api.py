"""The dashboard's JSON API under ``/api``: what its page reads and does. Reads are
GETs, actions are POSTs; an outage of the broker or the store answers 503 with what
failed, never a crash.

=========================================  ===============================================
``GET /api/overview``                      app, broker and store (passwords masked),
                                           health, task names
``GET /api/queues``                        ready / unacked / consumers per task queue, the
                                           dead-letter queue, rates over 15 minutes
``GET /api/tasks?name=&state=&q=&since=``  records, newest first (``since``: minutes ago;
                                           ``q``: a piece of the id or name; ``limit``)
``GET /api/tasks/counts?name=&q=&since=``  how many records match, by state
``GET /api/tasks/{id}``                    one record, its dead letter (arguments, reason)
                                           and its workflow tree, where there are
``POST /api/tasks/{id}/cancel``            cancel it
``POST /api/tasks/{id}/send-again``        send its task again under a new id; JSON body
                                           ``{"args": [...], "kwargs": {...}}``, else the
                                           record's call, else its dead letter's
``GET /api/dead?task=&limit=``             dead letters, oldest first, with their reasons
``POST /api/dead/requeue``                 ``{"ids": [...]}`` or ``{"task": ...}`` or ``{}``
                                           (all): requeue them
``POST /api/dead/purge``                   delete every dead letter
``POST /api/bulk/preview``                 ``{"action": "cancel"|"requeue", "name", "state",
                                           "since", "q"}``: how many it would touch
``POST /api/bulk/run``                     the same, done; how many it touched
``GET /api/workers``                       live workers from their heartbeats
``GET /api/schedules``                     each schedule, its last and next tick, the
                                           active scheduler (id, host, pid, last seen)
``GET /api/stream``                        server-sent events: ``snapshot``, ``task``,
                                           ``workers``
=========================================  ===============================================
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from taskq.app import TaskQueue
from taskq.brokers.base import DeadLetter
from taskq.dashboard.live import Live
from taskq.errors import BrokerError, StoreError, TaskqError, UnknownTask
from taskq.logs import get_logger
from taskq.message import TaskMessage
from taskq.status import TaskState, TaskStatus, utcnow
from taskq.stores.listing_base import TaskFilter

log = get_logger(__name__)

#: The most records a list or a bulk action takes at once.
MAX_LIMIT = 1000
#: A step id's tail after its workflow id (taskq.workflows.shape).
_STEP = re.compile(r"^(\d+(\.\d+)*)?(\.?error)?$")


def _live(request: Request) -> Live:
    live: Live = request.app.state.live
    live.ensure_started()
    return live


def _app(request: Request) -> TaskQueue:
    app: TaskQueue = request.app.state.taskq
    return app


def _json(data: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_plain(data), status_code=status)


def _plain(value: Any) -> Any:
    """JSON-able: pydantic models dumped, datetimes as ISO-8601."""
    if isinstance(value, TaskStatus):
        return value.model_dump(mode="json")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _failure(exc: Exception) -> JSONResponse:
    """An outage or a refusal, as the page shows it."""
    if isinstance(exc, BrokerError | StoreError):
        status, what = 503, ("broker" if isinstance(exc, BrokerError) else "store")
    elif isinstance(exc, UnknownTask):
        status, what = 404, "task"
    elif isinstance(exc, TaskqError | ValueError):
        status, what = 400, "request"
    else:
        status, what = 500, "dashboard"
        log.exception("dashboard request failed", error=repr(exc))
    return _json({"error": f"{type(exc).__name__}: {exc}", "failed": what}, status)


def _filter(params: Any) -> TaskFilter:
    """A filter from query parameters or a JSON body: ``name``, ``state``, ``q`` and
    ``since`` in minutes ago."""
    state = params.get("state") or None
    since = params.get("since") or None
    return TaskFilter(
        name=params.get("name") or None,
        state=TaskState(state) if state is not None else None,
        since=utcnow() - timedelta(minutes=float(since)) if since is not None else None,
        text=params.get("q") or None,
    )


def _limit(params: Any, default: int = 50) -> int:
    return max(0, min(int(params.get("limit") or default), MAX_LIMIT))


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    data = await request.json()
    if not isinstance(data, dict):
        raise ValueError("the body must be a JSON object")
    return data


def _letter(letter: DeadLetter) -> dict[str, Any]:
    args: Any = None
    kwargs: Any = None
    try:
        message = TaskMessage.decode(letter.body, correlation_id=letter.correlation_id)
        args, kwargs = message.args, message.kwargs
    except TaskqError:
        pass  # a malformed body: shown raw
    return {
        "task_id": letter.task_id,
        "task": letter.task,
        "reason": letter.reason,
        "queue": letter.queue,
        "dead_at": letter.dead_at.isoformat() if letter.dead_at else None,
        "args": args,
        "kwargs": kwargs,
        "body": letter.body.decode("utf-8", "replace")[:2000] if args is None else None,
    }


# -- reads ------------------------------------------------------------------------------


async def overview(request: Request) -> Response:
    app, live = _app(request), _live(request)
    return _json(
        {
            "exchange": app.topology.exchange,
            "broker": app.broker.display_url,
            "store": app.store.display_url,
            "events": app.events is not None,
            "tasks": sorted(app.tasks),
            "health": live.health(),
        }
    )


async def queues(request: Request) -> Response:
    live = _live(request)
    if live.polled_at is None:
        await live.poll()
    snapshot = live.snapshot()
    return _json({k: snapshot[k] for k in ("time", "health", "queues", "dead", "rates")})


async def tasks(request: Request) -> Response:
    try:
        where = _filter(request.query_params)
        found = await _app(request).store.find_tasks(where, limit=_limit(request.query_params))
    except Exception as exc:
        return _failure(exc)
    return _json({"tasks": found})


async def counts(request: Request) -> Response:
    try:
        found = await _app(request).store.count_tasks(_filter(request.query_params))
    except Exception as exc:
        return _failure(exc)
    return _json({"counts": {state.value: n for state, n in found.items()}})


async def _workflow_of(app: TaskQueue, task_id: str) -> Any:
    """The workflow tree of a step, found from its id (``<workflow id>.<path>``)."""
    parts = task_id.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        workflow_id, tail = ".".join(parts[:cut]), ".".join(parts[cut:])
        if not _STEP.match(tail):
            continue
        status = await app.workflow(workflow_id).status()
        if status is not None:
            return status.model_dump(mode="json")
    return None


async def task(request: Request) -> Response:
    app = _app(request)
    task_id = request.path_params["task_id"]
    try:
        status = await app.store.get(task_id)
        workflow = await _workflow_of(app, task_id)
    except Exception as exc:
        return _failure(exc)
    letter = None
    broker_error = None
    try:
        letters = await app.broker.dead_letters(MAX_LIMIT)
        letter = next((_letter(x) for x in letters if x.task_id == task_id), None)
    except Exception as exc:  # the record is still worth showing
        broker_error = f"{type(exc).__name__}: {exc}"
    if status is None and letter is None:
        return _json({"error": f"no record of task {task_id}", "failed": "task"}, 404)
    return _json(
        {
            "task": status,
            "dead_letter": letter,
            "workflow": workflow,
            "registered": status is not None and status.name in app.tasks,
            "broker_error": broker_error,
        }
    )


async def dead(request: Request) -> Response:
    params = request.query_params
    try:
        letters = await _app(request).dead_letters(
            task=params.get("task") or None, limit=_limit(params, 100)
        )
    except Exception as exc:
        return _failure(exc)
    return _json({"dead_letters": [_letter(x) for x in letters]})


async def workers(request: Request) -> Response:
    return _json({"workers": _live(request).live_workers()})


async def schedules(request: Request) -> Response:
    app = _app(request)
    now = utcnow()
    rows = []
    for schedule in app.schedules:
        try:
            last = await app.store.last_tick(schedule.name)
            error = None
        except Exception as exc:
            last, error = None, f"{type(exc).__name__}: {exc}"
        rows.append(
            {
                "name": schedule.name,
                "task": schedule.task,
                "schedule": schedule.describe(),
                "last_tick": last,
                "next_tick": schedule.next_tick(now),
                "error": error,
            }
        )
    # RabbitMQ tells only the active scheduler that it is (single active consumer): it
    # says so on the events exchange (taskq.schedules.presence).
    live = _live(request)
    return _json(
        {
            "schedules": rows,
            "active_scheduler": live.active_scheduler(),
            "events": live.events_health.ok,
        }
    )


async def stream(request: Request) -> Response:
    live = _live(request)
    queue = live.subscribe()

    async def events() -> AsyncIterator[str]:
        try:
            yield f"event: feed\ndata: {_dumps(live.feed)}\n\n"
            if live.polled_at is not None:
                yield f"event: snapshot\ndata: {_dumps(live.snapshot())}\n\n"
            while True:
                try:
                    yield await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            live.unsubscribe(queue)

    return StreamingResponse(
        events(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def _dumps(data: Any) -> str:
    import json

    return json.dumps(_plain(data))


ROUTES = [
    Route("/api/overview", overview),
    Route("/api/queues", queues),
    Route("/api/tasks", tasks),
    Route("/api/tasks/counts", counts),
    Route("/api/tasks/{task_id:str}", task),
    Route("/api/dead", dead),
    Route("/api/workers", workers),
    Route("/api/schedules", schedules),
    Route("/api/stream", stream),
]
