"""Which scheduler is active, told on the events exchange (:mod:`taskq.schedules.presence`)
and shown by the dashboard's schedules API: real :class:`Scheduler` objects on the
embedded backend and on RabbitMQ + Redis."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from taskq import TaskQueue
from taskq.dashboard import create_app
from taskq.dashboard import live as live_module
from taskq.events import TaskEvent
from taskq.schedules import presence
from taskq.schedules.scheduler import Scheduler
from tests.helpers import eventually
from tests.test_events import Seen, events_app

__all__ = ["events_app"]  # a fixture, imported for pytest


@pytest_asyncio.fixture
async def client(events_app: TaskQueue) -> AsyncIterator[httpx.AsyncClient]:
    dashboard = create_app(events_app, poll_interval=0.2)
    transport = httpx.ASGITransport(app=dashboard)
    async with httpx.AsyncClient(transport=transport, base_url="http://dash") as http:
        yield http
    await dashboard.state.live.stop()


async def _schedules(client: httpx.AsyncClient) -> Any:
    response = await client.get("/api/schedules")
    assert response.status_code == 200, response.text
    return response.json()


async def _last_said(seen: Seen, scheduler_id: str, what: str) -> None:
    """The last presence event of ``scheduler_id`` reaches this subscription's own
    consumer in its own time: the dashboard's consumer may have seen it first."""

    async def last() -> str | None:
        said = seen.of(scheduler_id)
        return said[-1].task if said else None

    await eventually(last, lambda task: task == what, timeout=10)


def _active_id(shown: Any) -> str | None:
    active = shown["active_scheduler"]
    return None if active is None else str(active["id"])


async def test_the_active_scheduler_says_so_and_the_dashboard_shows_which_one_it_is(
    events_app: TaskQueue, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(presence, "ANNOUNCE_INTERVAL", 0.3)
    app = events_app

    @app.periodic(every=timedelta(hours=1), name="presence.hourly")
    @app.task(name="presence.tick")
    async def tick() -> None: ...

    assert app.events is not None
    seen = Seen()
    subscription = await app.events.subscribe("scheduler.#", seen)
    await eventually(lambda: _schedules(client), lambda s: s["events"] is True)
    first = Scheduler(app, heartbeat=0.1, scheduler_id=f"first-{app.topology.exchange}")
    second = Scheduler(app, heartbeat=0.1, scheduler_id=f"second-{app.topology.exchange}")
    try:
        async with first, second:
            shown = await eventually(
                lambda: _schedules(client), lambda s: _active_id(s) == first.id
            )
            active = shown["active_scheduler"]
            assert (active["host"], active["pid"]) == (socket.gethostname(), os.getpid())
            assert active["last_seen"]
            assert [s["name"] for s in shown["schedules"]] == ["presence.hourly"]
            # Announced again every interval while active; the passive one says nothing.
            await seen.until(first.id, 3)
            assert not seen.of(second.id)
            event: TaskEvent = seen.of(first.id)[0]
            assert (event.state, event.task, event.exchange) == (
                "scheduler",
                "active",
                app.topology.exchange,
            )
            assert event.routing_key == "scheduler.active"

            # The active one stops: it says passive, the other takes over and says so.
            await first.stop()
            await _last_said(seen, first.id, "passive")
            await eventually(lambda: _schedules(client), lambda s: _active_id(s) == second.id)
        # Both stopped: no scheduler is active.
        await eventually(lambda: _schedules(client), lambda s: s["active_scheduler"] is None)
        await _last_said(seen, second.id, "passive")
    finally:
        await subscription.close()


async def test_a_scheduler_silent_for_too_long_is_no_longer_shown_active(
    events_app: TaskQueue, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(live_module, "ACTIVE_AFTER", 0.5)
    await eventually(lambda: _schedules(client), lambda s: s["events"] is True)
    assert events_app.events is not None
    # A scheduler killed with no goodbye: one active event, then nothing.
    killed = presence.scheduler_event(events_app.events, "active", "killed-one")
    await events_app.events.channel.publish(killed)
    await eventually(lambda: _schedules(client), lambda s: _active_id(s) == "killed-one")
    await eventually(lambda: _schedules(client), lambda s: s["active_scheduler"] is None)


async def test_with_events_off_a_scheduler_sends_no_presence(exchange: str) -> None:
    app = TaskQueue(broker="memory://", store="memory://", exchange=exchange)

    @app.periodic(every=timedelta(hours=1), name="quiet.hourly")
    @app.task(name="quiet.tick")
    async def tick() -> None: ...

    async with Scheduler(app, heartbeat=0.1) as scheduler:
        assert scheduler._presence is None
    await app.close()
