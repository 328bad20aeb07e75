"""The dashboard's actions (the POSTs of :mod:`taskq.dashboard.api`): cancel, send
again, requeue and purge dead letters, bulk actions by filter. Apart from the reads
because an action changes state and logs who asked: each is one line at ``info``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from taskq.app import TaskQueue
from taskq.dashboard.api import MAX_LIMIT, _app, _body, _failure, _filter, _json, _letter
from taskq.logs import get_logger
from taskq.status import TaskState

log = get_logger(__name__)


async def cancel(request: Request) -> Response:
    task_id = request.path_params["task_id"]
    try:
        cancelled = await _app(request).cancel(task_id)
    except Exception as exc:
        return _failure(exc)
    log.info("cancel from the dashboard", task_id=task_id, cancelled=cancelled)
    return _json({"cancelled": cancelled})


async def send_again(request: Request) -> Response:
    app = _app(request)
    task_id = request.path_params["task_id"]
    try:
        body = await _body(request)
        status = await app.store.get(task_id)
        letter = None
        if "args" not in body and (status is None or status.args is None):
            letters = await app.broker.dead_letters(MAX_LIMIT)
            letter = next((_letter(x) for x in letters if x.task_id == task_id), None)
        name = body.get("task") or (status.name if status else None)
        if name is None and letter is not None:
            name = letter["task"]
        if name is None:
            return _json({"error": f"no record of task {task_id}", "failed": "task"}, 404)
        if "args" in body:
            args, kwargs = body.get("args") or [], body.get("kwargs") or {}
        elif status is not None and status.args is not None:
            args, kwargs = status.args, status.kwargs or {}
        elif letter is not None and letter["args"] is not None:
            args, kwargs = letter["args"], letter["kwargs"] or {}
        else:
            raise ValueError(
                "the arguments of this task are unknown (no publisher recorded them, or "
                "they were too big to keep) and there is no dead letter of it: give them "
                'as {"args": [...], "kwargs": {...}}'
            )
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError("args must be a JSON array and kwargs a JSON object")
        handle = await app.send(name, args, kwargs)
    except Exception as exc:
        return _failure(exc)
    log.info("sent again from the dashboard", task_id=handle.id, task=name, original=task_id)
    return _json({"task_id": handle.id, "task": name})


async def requeue(request: Request) -> Response:
    try:
        body = await _body(request)
        ids = body.get("ids") or ()
        requeued = await _app(request).requeue_dead(task=body.get("task") or None, ids=list(ids))
    except Exception as exc:
        return _failure(exc)
    log.info("dead letters requeued from the dashboard", count=len(requeued))
    return _json({"requeued": [x.task_id for x in requeued]})


async def purge(request: Request) -> Response:
    try:
        count = await _app(request).purge_dead()
    except Exception as exc:
        return _failure(exc)
    log.info("dead letters purged from the dashboard", count=count)
    return _json({"purged": count})


#: The states a cancel can still stop (a running sync task refuses, as ever).
_CANCELLABLE = (TaskState.QUEUED, TaskState.RETRYING, TaskState.STARTED)


async def _bulk_targets(app: TaskQueue, body: dict[str, Any]) -> tuple[str, list[str], bool]:
    """The action, the task ids it would touch (for ``cancel``, the matching records
    that can still be cancelled; for ``requeue``, the matching records that have a dead
    letter) and whether more may match: one action looks at :data:`MAX_LIMIT` records
    and dead letters at most, and the page says so (run it again for the rest)."""
    action = body.get("action")
    where = _filter(body)
    if action == "cancel":  # asked of the store state by state: finished ones are not counted
        states = [where.state] if where.state is not None else list(_CANCELLABLE)
        ids: list[str] = []
        capped = False
        for state in (s for s in states if s in _CANCELLABLE):
            found = await app.store.find_tasks(replace(where, state=state), limit=MAX_LIMIT)
            capped = capped or len(found) >= MAX_LIMIT
            ids += [s.id for s in found]
        return action, ids, capped
    found = await app.store.find_tasks(where, limit=MAX_LIMIT)
    capped = len(found) >= MAX_LIMIT
    if action == "requeue":
        letters = await app.broker.dead_letters(MAX_LIMIT)
        dead_ids = {x.task_id for x in letters}
        capped = capped or len(letters) >= MAX_LIMIT
        return action, [s.id for s in found if s.id in dead_ids], capped
    raise ValueError("action must be 'cancel' or 'requeue'")


async def bulk_preview(request: Request) -> Response:
    try:
        action, ids, capped = await _bulk_targets(_app(request), await _body(request))
    except Exception as exc:
        return _failure(exc)
    return _json(
        {"action": action, "count": len(ids), "ids": ids[:20], "capped": capped, "limit": MAX_LIMIT}
    )


async def bulk_run(request: Request) -> Response:
    app = _app(request)
    try:
        action, ids, capped = await _bulk_targets(app, await _body(request))
        if action == "cancel":
            done = [task_id for task_id in ids if await app.cancel(task_id)]
        else:
            done = [x.task_id or "" for x in await app.requeue_dead(ids=ids)] if ids else []
    except Exception as exc:
        return _failure(exc)
    log.info("bulk action from the dashboard", action=action, count=len(done))
    return _json({"action": action, "count": len(done), "capped": capped})


ROUTES = [
    Route("/api/tasks/{task_id:str}/cancel", cancel, methods=["POST"]),
    Route("/api/tasks/{task_id:str}/send-again", send_again, methods=["POST"]),
    Route("/api/dead/requeue", requeue, methods=["POST"]),
    Route("/api/dead/purge", purge, methods=["POST"]),
    Route("/api/bulk/preview", bulk_preview, methods=["POST"]),
    Route("/api/bulk/run", bulk_run, methods=["POST"]),
]
