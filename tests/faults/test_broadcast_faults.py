"""A broadcast while one of three worker processes is being restarted (issue 10): the
two that run get it once each; the one down when it was published never does, and gets
the next one once it is back."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis.asyncio as aioredis

from taskq import BroadcastHandle
from tests.faults.broadcast_app import BROADCAST
from tests.faults.harness import Deployment, Fleet, runs_key, stop_cleanly
from tests.faults.servers import RabbitNode


async def _runs(deployment: Deployment, key: str) -> dict[int, int]:
    """Runs of the call ``key`` by pid."""
    client = aioredis.from_url(deployment.counter_url)
    try:
        found = await client.hgetall(runs_key(deployment.exchange))
    finally:
        await client.aclose()
    runs = {}
    for field, count in found.items():
        name, _, pid = field.decode().rpartition(":")
        if name == key:
            runs[int(pid)] = int(count)
    return runs


@pytest.mark.timeout(120)
async def test_a_broadcast_while_a_worker_restarts_runs_once_on_each_live_worker(
    node: RabbitNode, deployment: Deployment, tmp_path: Path
) -> None:
    fleet = Fleet(deployment, tmp_path, app_path="tests.faults.broadcast_app:app")
    app = deployment.app()
    app.task(name=BROADCAST, broadcast=True)(_never_called)  # the sender knows it as one
    await app.connect()
    try:
        workers = [fleet.start("--concurrency", "2") for _ in range(3)]
        for worker in workers:
            await fleet.wait_started(worker)
        restarting = workers[2]
        fleet.kill(restarting)  # a crash; its supervisor would start it again
        during = await app.send(BROADCAST, ["during"])
        assert isinstance(during, BroadcastHandle) and during.reached
        back = fleet.restart(restarting)
        await fleet.wait_started(back)

        outcomes = await during.results(timeout=20, expected=2)
        live = {w.proc.pid for w in workers[:2]}
        assert await _runs(deployment, "during") == {pid: 1 for pid in live}
        assert len(outcomes) == 2
        assert {status.worker.rsplit("-", 1)[-1] for status in outcomes.values()} == {
            str(pid) for pid in live
        }
        assert {status.state.value for status in outcomes.values()} == {"succeeded"}

        after = await app.send(BROADCAST, ["after"])
        assert isinstance(after, BroadcastHandle)
        assert len(await after.results(timeout=20, expected=3)) == 3
        assert await _runs(deployment, "after") == {pid: 1 for pid in {*live, back.proc.pid}}
        assert await _runs(deployment, "during") == {pid: 1 for pid in live}
        await stop_cleanly(fleet, node)
    finally:
        fleet.close()
        await app.broker.destroy([BROADCAST])
        await app.close()


async def _never_called(key: str) -> int:
    raise AssertionError("runs in the worker processes only")
