"""Workers' heartbeats: ``worker.heartbeat`` events with host, pid, tasks running and
concurrency every few seconds while the app's events are on, ``worker.offline`` at stop
(what the dashboard's workers page shows), on RabbitMQ and on the embedded broker."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from taskq import TaskQueue, Worker
from taskq import heartbeat as heartbeat_module
from tests.helpers import eventually
from tests.test_events import Seen, events_app

__all__ = ["events_app"]  # a fixture, imported for pytest


async def test_a_running_worker_beats_with_what_it_runs_and_says_when_it_stops(
    events_app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heartbeat_module, "HEARTBEAT_INTERVAL", 0.1)
    assert events_app.events is not None
    seen = Seen()
    subscription = await events_app.events.subscribe("worker.*", seen)
    release = asyncio.Event()

    @events_app.task(name="beat.hold")
    async def hold() -> None:
        await release.wait()

    try:
        worker = Worker(events_app, concurrency=3)
        async with worker:
            await hold.delay()

            async def beats() -> list[int | None]:
                return [e.running for e in seen.of(worker.id) if e.task == "heartbeat"]

            await eventually(beats, lambda running: 1 in running, timeout=10)
            release.set()
        offline = await eventually(
            lambda: _offline(seen, worker.id), lambda found: bool(found), timeout=10
        )
    finally:
        await subscription.close()
    first = seen.of(worker.id)[0]
    assert first.routing_key == "worker.heartbeat"
    assert (first.host, first.pid, first.concurrency) == (socket.gethostname(), os.getpid(), 3)
    assert first.exchange == events_app.topology.exchange
    assert offline[-1].routing_key == "worker.offline"


async def _offline(seen: Seen, worker_id: str) -> list[object]:
    return [e for e in seen.of(worker_id) if e.task == "offline"]


async def test_without_events_a_worker_sends_no_heartbeat() -> None:
    app = TaskQueue(broker="memory://", store="memory://")

    @app.task(name="beat.noop")
    async def noop() -> None: ...

    async with Worker(app) as worker:
        assert worker._heartbeat is None
