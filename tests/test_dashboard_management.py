"""The dashboard's queue figures from RabbitMQ's management API (``create_app(...,
management_url=...)``, ``taskq dashboard --management-url`` / ``TASKQ_MANAGEMENT_URL``):
unacked counts on the page and at /metrics, and the fallback to passive declares (ready
and consumers, unacked unknown) while the API does not answer.

Against a stand-in of the API (tests/test_inspect.py's) and the real RabbitMQ + Redis;
tests/faults/test_management_api.py checks the same against a real management plugin.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from taskq import TaskQueue
from taskq.brokers import amqp_management
from taskq.dashboard import create_app
from tests.broker_nodes import closed_port
from tests.conftest import remove_app
from tests.helpers import eventually
from tests.test_inspect import management

__all__ = ["management"]  # a fixture, imported for pytest


@pytest_asyncio.fixture
async def amqp_app(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[TaskQueue]:
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)

    @app.task(name="mgmt.add")
    async def add(x: int, y: int) -> int:
        return x + y

    await app.connect()
    try:
        yield app
    finally:
        await remove_app(app, list(app.tasks), redis_url)


async def _get(client: httpx.AsyncClient, path: str) -> Any:
    response = await client.get(path)
    assert response.status_code == 200, response.text
    return response.json() if path.startswith("/api") else response.text


async def test_unacked_counts_come_from_the_management_api_and_fall_back_without_it(
    amqp_app: TaskQueue, management: Any
) -> None:
    await amqp_app.send("mgmt.add", [1, 2])  # its queue declared, one message ready
    topology = amqp_app.topology
    queue, dead = topology.queue_name("mgmt.add"), topology.dead_queue
    management.answers = {
        "/api/queues/%2F": [
            {"name": queue, "messages_ready": 4, "messages_unacknowledged": 3, "consumers": 2},
            {"name": dead, "messages_ready": 1, "messages_unacknowledged": 0, "consumers": 0},
            {"name": "someone.else", "messages_ready": 9},
        ]
    }
    port = management.server_address[1]
    dashboard = create_app(
        amqp_app, poll_interval=0.1, management_url=f"http://ops:s3cret@127.0.0.1:{port}/"
    )
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            shown = await _get(client, "/api/queues")
            row = next(q for q in shown["queues"] if q["task"] == "mgmt.add")
            assert (row["queue"], row["ready"], row["unacked"], row["consumers"]) == (
                queue,
                4,
                3,
                2,
            )
            assert (shown["dead"]["ready"], shown["dead"]["unacked"]) == (1, 0)
            assert shown["health"]["management"]["ok"] is True
            metrics = await _get(client, "/metrics")
            assert f'taskq_queue_unacked{{queue="{queue}"}} 3' in metrics
            assert f'taskq_queue_ready{{queue="{queue}"}} 4' in metrics
            assert f'taskq_queue_unacked{{queue="{dead}"}} 0' in metrics
            # The URL's credentials were sent, never the broker's.
            ops = "Basic " + base64.b64encode(b"ops:s3cret").decode()
            assert {auth for _, auth in management.seen} == {ops}

            # The API stops answering: the broker's passive declares take over (the
            # real queue: one message), unacked unknown, and the page says why.
            management.answers = {}
            shown = await eventually(
                lambda: _get(client, "/api/queues"),
                lambda s: (
                    s["health"]["management"]["ok"] is False
                    and s["queues"][0].get("unacked", 0) is None
                ),
            )
            row = next(q for q in shown["queues"] if q["task"] == "mgmt.add")
            assert (row["ready"], row["unacked"], row["consumers"]) == (1, None, 0)
            assert "404" in shown["health"]["management"]["error"]
            assert "s3cret" not in str(shown)
            metrics = await _get(client, "/metrics")
            assert f'taskq_queue_ready{{queue="{queue}"}} 1' in metrics
            assert f'taskq_queue_unacked{{queue="{queue}"}}' not in metrics
    finally:
        await dashboard.state.live.stop()


async def test_without_a_management_url_the_broker_s_own_api_is_used_when_it_answers(
    amqp_app: TaskQueue, management: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No URL given: the API beside the broker (port 15672 of its host, here the
    stand-in's port), with the broker URL's credentials, as ``taskq queues`` does."""
    monkeypatch.setattr(amqp_management, "HTTP_PORT", management.server_address[1])
    queue = amqp_app.topology.queue_name("mgmt.add")
    management.answers = {
        "/api/queues/%2F": [
            {"name": queue, "messages_ready": 5, "messages_unacknowledged": 2, "consumers": 1}
        ]
    }
    dashboard = create_app(amqp_app, poll_interval=0.1)
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            shown = await eventually(lambda: _get(client, "/api/queues"), lambda s: s["queues"])
            row = next(q for q in shown["queues"] if q["task"] == "mgmt.add")
            assert (row["ready"], row["unacked"], row["consumers"]) == (5, 2, 1)
            assert shown["health"]["management"]["ok"] is True
            assert {auth for _, auth in management.seen} == {
                "Basic " + base64.b64encode(b"guest:guest").decode()
            }
    finally:
        await dashboard.state.live.stop()


async def test_without_a_management_url_the_page_has_no_management_health(
    amqp_app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing answers beside the broker (most brokers: no plugin): no error shown,
    unacked unknown, the guess tried again only after a minute."""
    monkeypatch.setattr(amqp_management, "HTTP_PORT", closed_port())
    dashboard = create_app(amqp_app, poll_interval=0.1)
    transport = httpx.ASGITransport(app=dashboard)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:
            shown = await eventually(lambda: _get(client, "/api/queues"), lambda s: s["queues"])
            assert "management" not in shown["health"]
            assert shown["queues"][0].get("unacked") is None
            live = dashboard.state.live
            assert live.management is not None and live._management_retry_at > 0
    finally:
        await dashboard.state.live.stop()


async def test_a_broker_without_a_management_api_ignores_the_url() -> None:
    app = TaskQueue(broker="memory://", store="memory://")
    assert app.broker.management_api("http://127.0.0.1:1/") is None
    dashboard = create_app(app, management_url="http://127.0.0.1:1/")
    assert dashboard.state.live.management is None
