"""``taskq dashboard``: a live web page of an app's queues, tasks, failures, workers
and schedules, with a JSON API under ``/api`` (:mod:`taskq.dashboard.api`) and queue
gauges at ``/metrics``.

An ASGI app (Starlette), served by the command or mounted in your own app:

    from fastapi import FastAPI
    from taskq.dashboard import create_app
    from myproject.tasks import app as taskq_app

    api = FastAPI()
    api.mount("/taskq", create_app(taskq_app, auth="admin:s3cret"))

History comes from the status store (the page shows the same past after a restart);
live figures from the broker (polled) and the events exchange (workers' heartbeats and
tasks' lifecycle events: start workers with ``TASKQ_EVENTS=1``). Needs the
``taskq[dashboard]`` extra (Starlette, uvicorn).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from taskq.app import TaskQueue
from taskq.dashboard import actions, api, metrics
from taskq.dashboard.auth import BasicAuth, BasicAuthMiddleware
from taskq.dashboard.live import Live

__all__ = ["BasicAuth", "create_app"]

STATIC = Path(__file__).parent / "static"


async def _index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})


async def _metrics(request: Request) -> Response:
    live: Live = request.app.state.live
    live.ensure_started()
    if live.polled_at is None:
        await live.poll()
    return PlainTextResponse(
        metrics.render([*live.queues, live.dead or {}]),
        media_type=None,
        headers={"Content-Type": metrics.CONTENT_TYPE},
    )


def create_app(
    app: TaskQueue,
    *,
    auth: str | BasicAuth | None = None,
    poll_interval: float | None = None,
    management_url: str | None = None,
) -> Starlette:
    """The dashboard of ``app`` as an ASGI app. ``auth``: ``"user:password"`` turns on
    HTTP basic auth for every route. ``poll_interval``: seconds between two polls of
    the queues (default 2). ``management_url``: RabbitMQ's management API
    (``http://user:pass@host:15672``; the broker URL's credentials if it has none),
    polled for ready, unacked and consumers instead of passive declares, which cannot
    tell unacked; a broker without one ignores it. Not given: the API beside the
    broker (port 15672 of its node), used if it answers."""
    live = Live(app, poll_interval=poll_interval, management_url=management_url)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        live.ensure_started()
        try:
            yield
        finally:
            await live.stop()

    middleware = []
    if auth is not None:
        checked = auth if isinstance(auth, BasicAuth) else BasicAuth.parse(auth)
        middleware.append(Middleware(BasicAuthMiddleware, auth=checked))
    routes = [
        Route("/", _index),
        Route("/metrics", _metrics),
        *api.ROUTES,
        *actions.ROUTES,
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    dashboard = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    dashboard.state.taskq = app
    dashboard.state.live = live
    return dashboard
