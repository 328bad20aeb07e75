"""The dashboard inside a user's own ASGI app (``create_app(app)`` mounted under a path),
with its status store down, and its history after a restart: what the issue promises
beyond the page's own tests (tests/test_dashboard.py)."""

from __future__ import annotations

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from taskq import TaskQueue, Worker
from taskq.dashboard import create_app
from tests.helpers import eventually


async def test_mounted_in_the_user_s_own_app_it_serves_its_page_and_api_under_the_path() -> None:
    app = TaskQueue(broker="memory://", store="memory://")

    @app.task(name="mount.add")
    async def add(x: int, y: int) -> int:
        return x + y

    async def home(_: Request) -> PlainTextResponse:
        return PlainTextResponse("the user's own app")

    dashboard = create_app(app, poll_interval=0.1)
    site = Starlette(routes=[Route("/", home), Mount("/ops/taskq", app=dashboard)])
    transport = httpx.ASGITransport(app=site)
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://site") as http,
            Worker(app),
        ):
            assert (await http.get("/")).text == "the user's own app"
            page = await http.get("/ops/taskq/")
            assert page.status_code == 200 and "app.js" in page.text
            assert (await http.get("/ops/taskq/static/app.js")).status_code == 200
            assert await (await add.delay(2, 3)).result(timeout=10) == 5
            # Mounted, its lifespan is not run by the host app: the first request
            # starts the live state all the same.
            found = await eventually(
                lambda: http.get("/ops/taskq/api/tasks"),
                lambda r: r.status_code == 200 and r.json()["tasks"],
            )
            assert [t["name"] for t in found.json()["tasks"]] == ["mount.add"]
            queues = (await http.get("/ops/taskq/api/queues")).json()
            assert [q["task"] for q in queues["queues"]] == ["mount.add"]
    finally:
        await dashboard.state.live.stop()


async def test_with_the_store_down_the_dashboard_answers_and_says_so() -> None:
    # Nothing listens on port 1: every store call fails at once; the broker answers.
    app = TaskQueue(broker="memory://", store="redis://:pa55@127.0.0.1:1/0")

    @app.task(name="down.noop")
    async def noop() -> None: ...

    dashboard = create_app(app, poll_interval=0.1)
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
            shown = await eventually(
                lambda: http.get("/api/overview"),
                lambda r: r.status_code == 200 and r.json()["health"]["store"]["ok"] is False,
            )
            store = shown.json()["health"]["store"]
            assert store["down_since"] and "pa55" not in store["error"]
            queues = await http.get("/api/queues")  # the broker still answers
            assert queues.status_code == 200
            assert [q["task"] for q in queues.json()["queues"]] == ["down.noop"]
            tasks = await http.get("/api/tasks")
            assert tasks.status_code == 503 and tasks.json()["failed"] == "store"
            assert "pa55" not in tasks.text
            assert (await http.get("/")).status_code == 200
    finally:
        await dashboard.state.live.stop()


async def test_a_restarted_dashboard_shows_the_same_past_from_the_store(
    amqp_url: str, redis_url: str, exchange: str
) -> None:
    from tests.conftest import remove_app

    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)

    @app.task(name="past.square")
    async def square(x: int) -> int:
        return x * x

    await app.connect()
    try:
        async with Worker(app):
            ids = [(await square.delay(x)).id for x in range(3)]
            for task_id in ids:
                await app.handle(task_id).result(timeout=10)
        seen: list[set[str]] = []
        for _ in range(2):  # the dashboard, then the dashboard started again
            dashboard = create_app(app, poll_interval=0.1)
            transport = httpx.ASGITransport(app=dashboard)
            try:
                async with httpx.AsyncClient(transport=transport, base_url="http://d") as http:
                    listed = await http.get("/api/tasks", params={"task": "past.square"})
                    assert listed.status_code == 200, listed.text
                    seen.append({t["id"] for t in listed.json()["tasks"]})
                    one = (await http.get(f"/api/tasks/{ids[2]}")).json()["task"]
                    assert one["state"] == "succeeded" and one["result"] == 4
            finally:
                await dashboard.state.live.stop()
        assert seen == [set(ids), set(ids)]
    finally:
        await remove_app(app, list(app.tasks), redis_url)
