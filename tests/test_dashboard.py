"""The dashboard's JSON API and /metrics (``taskq.dashboard``), driven with httpx against
the embedded backend and RabbitMQ + Redis: what the page reads and what its buttons do."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from taskq import TaskFailed, TaskQueue, Worker
from taskq import heartbeat as heartbeat_module
from taskq.dashboard import create_app
from taskq.status import TaskState
from tests.helpers import eventually
from tests.test_events import events_app

__all__ = ["events_app"]  # a fixture, imported for pytest


@pytest_asyncio.fixture
async def client(events_app: TaskQueue) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = create_app(events_app, poll_interval=0.2)
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
        yield http
    await dashboard.state.live.stop()


def register(app: TaskQueue) -> tuple[Any, Any, Any]:
    @app.task(name="dash.double")
    async def double(x: int) -> int:
        return 2 * x

    @app.task(name="dash.boom", max_retries=0)
    async def boom(x: int) -> None:
        raise ValueError(f"no good: {x}")

    @app.task(name="dash.later")
    async def later() -> None: ...

    return double, boom, later


async def get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json()


async def post(client: httpx.AsyncClient, path: str, body: Any = None) -> Any:
    response = await client.post(path, json=body if body is not None else {})
    assert response.status_code == 200, response.text
    return response.json()


async def subscribed(client: httpx.AsyncClient) -> None:
    """The first request starts the live state; wait until it listens to events."""
    await eventually(
        lambda: get(client, "/api/overview"), lambda o: o["health"]["events"]["ok"] is True
    )


async def test_the_api_shows_queues_counts_and_a_failed_task_and_requeues_its_dead_letter(
    events_app: TaskQueue, client: httpx.AsyncClient
) -> None:
    double, boom, _ = register(events_app)
    await subscribed(client)
    async with Worker(events_app, concurrency=4):
        for x in range(3):
            await (await double.delay(x)).result(timeout=10)
        failed = await boom.delay(7)
        with pytest.raises(TaskFailed):
            await failed.result(timeout=10)

        overview = await get(client, "/api/overview")
        assert overview["tasks"] == ["dash.boom", "dash.double", "dash.later"]
        assert overview["exchange"] == events_app.topology.exchange

        async def counts() -> dict[str, int]:
            return dict((await get(client, "/api/tasks/counts"))["counts"])

        found = await eventually(counts, lambda c: c["succeeded"] == 3 and c["failed"] == 1)
        assert found["queued"] == 0
        emails = (await get(client, "/api/tasks/counts?name=dash.boom"))["counts"]
        assert emails["failed"] == 1 and emails["succeeded"] == 0

        listed = (await get(client, "/api/tasks?state=failed"))["tasks"]
        assert [t["id"] for t in listed] == [failed.id]
        assert [t["id"] for t in (await get(client, f"/api/tasks?q={failed.id[:8]}"))["tasks"]] == [
            failed.id
        ]

        page = await get(client, f"/api/tasks/{failed.id}")
        assert page["task"]["error"]["type"] == "ValueError"
        assert "no good: 7" in page["task"]["error"]["traceback"]
        assert page["dead_letter"]["args"] == [7]
        assert "ValueError" in page["dead_letter"]["reason"]

        async def queues() -> Any:
            return await get(client, "/api/queues")

        snapshot = await eventually(queues, lambda q: (q["dead"] or {}).get("ready") == 1)
        row = next(q for q in snapshot["queues"] if q["task"] == "dash.double")
        assert row["queue"] == f"{events_app.topology.exchange}.dash.double"
        assert row["consumers"] >= 1 and row["ready"] == 0
        rates = snapshot["rates"]["dash.double"]
        assert len(rates["finished"]) == 90
        # Per-second rates over 10 s buckets: 0.1 + 0.2 is not 0.3 in floats.
        assert round(sum(rates["finished"]) * 10) == 3
        assert round(sum(rates["published"]) * 10) == 3

        metrics = await client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain; version=0.0.4")
        queue = f"{events_app.topology.exchange}.dash.double"
        assert f'taskq_queue_ready{{queue="{queue}"}} 0' in metrics.text
        assert f'taskq_queue_ready{{queue="{events_app.topology.dead_queue}"}} 1' in metrics.text

        letters = (await get(client, "/api/dead"))["dead_letters"]
        assert [(x["task_id"], x["task"]) for x in letters] == [(failed.id, "dash.boom")]
        preview = await post(
            client,
            "/api/bulk/preview",
            {"action": "requeue", "name": "dash.boom", "state": "failed", "since": "60"},
        )
        assert (preview["count"], preview["ids"], preview["capped"]) == (1, [failed.id], False)
        other = {"action": "requeue", "name": "dash.double"}
        nothing = await post(client, "/api/bulk/preview", other)
        assert nothing["count"] == 0

        requeued = await post(client, "/api/dead/requeue", {"ids": [failed.id]})
        assert requeued["requeued"] == [failed.id]
        # It runs again (and fails again: the same argument), back in the dead letters.
        await eventually(
            lambda: get(client, "/api/dead"), lambda d: len(d["dead_letters"]) == 1, timeout=10
        )
        assert (await post(client, "/api/dead/purge"))["purged"] == 1
        assert (await get(client, "/api/dead"))["dead_letters"] == []


async def test_a_delayed_task_is_cancelled_and_a_task_sent_again_from_the_api(
    events_app: TaskQueue, client: httpx.AsyncClient
) -> None:
    double, _, later = register(events_app)
    async with Worker(events_app, concurrency=2):
        delayed = await later.send(countdown=60)
        assert (await post(client, f"/api/tasks/{delayed.id}/cancel"))["cancelled"] is True
        assert (await get(client, f"/api/tasks/{delayed.id}"))["task"]["state"] == "cancelled"

        done = await double.delay(4)
        assert await done.result(timeout=10) == 8
        # The queued record kept the call: the page shows it, and sends it again.
        page = (await get(client, f"/api/tasks/{done.id}"))["task"]
        assert (page["args"], page["kwargs"], page["call_truncated"]) == ([4], {}, None)
        same = await post(client, f"/api/tasks/{done.id}/send-again")
        assert same["task_id"] != done.id
        assert await events_app.handle(same["task_id"]).result(timeout=10) == 8
        # A task no publisher recorded (another language's): its arguments are unknown.
        foreign = f"foreign-{done.id}"
        await events_app.store.transition(foreign, "dash.double", TaskState.STARTED)
        assert (await get(client, f"/api/tasks/{foreign}"))["task"]["args"] is None
        refused = await client.post(f"/api/tasks/{foreign}/send-again", json={})
        assert refused.status_code == 400 and "arguments" in refused.json()["error"]
        again = await post(client, f"/api/tasks/{done.id}/send-again", {"args": [21]})
        assert again["task"] == "dash.double" and again["task_id"] != done.id
        assert await events_app.handle(again["task_id"]).result(timeout=10) == 42
        bad = await client.post(f"/api/tasks/{done.id}/send-again", json={"args": ["x"]})
        assert bad.status_code == 400

        missing = await client.get("/api/tasks/no-such-task")
        assert missing.status_code == 404
        unknown = await client.post("/api/tasks/no-such-task/cancel")
        assert unknown.status_code == 404


async def test_workers_come_from_heartbeats_and_leave_when_they_stop(
    events_app: TaskQueue, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeat_module, "HEARTBEAT_INTERVAL", 0.2)
    register(events_app)
    await subscribed(client)

    async def workers() -> list[dict[str, Any]]:
        return list((await get(client, "/api/workers"))["workers"])

    async with Worker(events_app, concurrency=5) as worker:
        seen = await eventually(workers, lambda ws: any(w["id"] == worker.id for w in ws))
        mine = next(w for w in seen if w["id"] == worker.id)
        assert (mine["concurrency"], mine["running"]) == (5, 0)
        assert mine["pid"] and mine["host"] and mine["last_seen"]
    await eventually(workers, lambda ws: all(w["id"] != worker.id for w in ws))


async def test_schedules_show_their_last_and_next_tick(
    events_app: TaskQueue, client: httpx.AsyncClient
) -> None:
    _, _, later = register(events_app)
    events_app.schedule(later, every=timedelta(minutes=5), name="dash.every5")
    rows = (await get(client, "/api/schedules"))["schedules"]
    assert [(r["name"], r["task"], r["last_tick"]) for r in rows] == [
        ("dash.every5", "dash.later", None)
    ]
    assert rows[0]["next_tick"]


async def test_basic_auth_guards_every_route_and_never_shows_the_password() -> None:
    app = TaskQueue(broker="memory://", store="memory://")
    dashboard = create_app(app, auth="admin:s3cr:et")
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
        for path in ("/", "/api/overview", "/metrics", "/static/app.js"):
            refused = await http.get(path)
            assert refused.status_code == 401
            assert refused.headers["www-authenticate"].startswith("Basic")
        wrong = base64.b64encode(b"admin:nope").decode()
        assert (await http.get("/", headers={"Authorization": f"Basic {wrong}"})).status_code == 401
        assert (await http.post("/api/dead/purge", auth=("admin", "x"))).status_code == 401
        page = await http.get("/", auth=("admin", "s3cr:et"))
        assert page.status_code == 200 and "taskq dashboard" in page.text
        overview = await http.get("/api/overview", auth=("admin", "s3cr:et"))
        assert overview.status_code == 200 and "s3cr" not in overview.text
    assert "s3cr" not in repr(dashboard.user_middleware)
    await dashboard.state.live.stop()


async def test_with_the_broker_down_the_dashboard_answers_and_says_so() -> None:
    # Nothing listens on port 1: every broker call fails at once.
    app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:1/", store="memory://")
    dashboard = create_app(app, poll_interval=0.2)
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
        queues = await http.get("/api/queues")
        assert queues.status_code == 200
        broker = queues.json()["health"]["broker"]
        assert broker["ok"] is False and broker["down_since"]
        assert "guest:guest" not in broker["error"]
        assert (await http.get("/api/tasks")).status_code == 200  # the store still answers
        dead = await http.get("/api/dead")
        assert dead.status_code == 503 and dead.json()["failed"] == "broker"
        assert (await http.get("/")).status_code == 200
    await dashboard.state.live.stop()
    await asyncio.sleep(0)


async def test_taskq_dashboard_serves_with_auth_from_the_environment_and_never_prints_it(
    amqp_url: str, redis_url: str, exchange: str
) -> None:
    import socket
    import subprocess
    import sys

    from tests.deployment import environment

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = environment(
        broker_url=amqp_url, store_url=redis_url, exchange=exchange, dashboard_auth="ops:pa55word"
    )
    process = subprocess.Popen(  # noqa: ASYNC220 (a server polled over HTTP below)
        [sys.executable, "-m", "taskq", "dashboard", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

            async def overview() -> int:
                try:
                    response = await http.get("/api/overview", auth=("ops", "pa55word"))
                except httpx.TransportError:
                    return 0
                return response.status_code

            await eventually(overview, lambda code: code == 200, timeout=20)
            assert (await http.get("/api/overview")).status_code == 401
            metrics = await http.get("/metrics", auth=("ops", "pa55word"))
            assert f'taskq_queue_ready{{queue="{exchange}.dead"}}' in metrics.text
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=20)
    assert process.returncode == 0, stderr
    assert "dashboard serving" in stderr and "pa55word" not in stderr


async def test_the_live_loop_ends_even_when_a_poll_swallows_its_cancel() -> None:
    """redis-py sends with ``asyncio.wait_for``, which on Python 3.11 returns the
    send's result instead of raising when a cancel lands as the send completes (the
    loop's cancel is then lost); stop() must still end the loop, not wait forever."""
    from taskq.dashboard.live import Live

    app = TaskQueue("memory://", store="memory://")
    live = Live(app, poll_interval=0.01)
    polls = 0
    polling = asyncio.Event()

    async def poll() -> None:  # what the race does: the cancel arrives, the call returns
        nonlocal polls
        polls += 1
        polling.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return

    live.poll = poll  # type: ignore[method-assign]
    live.ensure_started()
    await asyncio.wait_for(polling.wait(), 5)
    await asyncio.wait_for(live.stop(), 5)
    assert polls == 1


async def test_a_bulk_action_over_more_than_its_limit_says_so_and_takes_the_rest_when_run_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from taskq.dashboard import actions

    monkeypatch.setattr(actions, "MAX_LIMIT", 2)
    app = TaskQueue("memory://", store="memory://")

    @app.task(name="bulk.later")
    async def later() -> None: ...

    handles = [await later.send(countdown=3600) for _ in range(3)]
    dashboard = create_app(app, poll_interval=0.2)
    transport = httpx.ASGITransport(app=dashboard)
    cancel = {"action": "cancel", "name": "bulk.later"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            preview = await post(client, "/api/bulk/preview", cancel)
            assert (preview["count"], preview["capped"], preview["limit"]) == (2, True, 2)
            assert (await post(client, "/api/bulk/run", cancel))["count"] == 2
            preview = await post(client, "/api/bulk/preview", cancel)
            assert (preview["count"], preview["capped"]) == (1, False)
            assert (await post(client, "/api/bulk/run", cancel))["count"] == 1
        states = {(await h.status()).state for h in handles}  # type: ignore[union-attr]
        assert states == {TaskState.CANCELLED}
    finally:
        await dashboard.state.live.stop()
