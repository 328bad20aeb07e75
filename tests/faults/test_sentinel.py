"""The status store's primary is killed mid-run behind Redis Sentinel: the sentinels
promote the replica, senders' store calls wait for it and return, workers requeue what
they could not record on a replica, and every task succeeds once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from taskq.stores.redis_sentinel import RedisSentinelStore
from tests.faults.harness import (
    Deployment,
    Figures,
    Fleet,
    StateWatcher,
    finished_count,
    publish,
    report,
    stop_cleanly,
    task_ids,
    verdict,
)
from tests.faults.sentinel import SentinelGroup
from tests.faults.servers import RabbitNode
from tests.helpers import eventually


@pytest.mark.timeout(150)
# redis-py may drop a stream writer to the killed primary without closing it (seen once
# in four full runs): a ResourceWarning of the driver's at garbage collection, not a
# lost task; the figures below are what this scenario checks.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_a_killed_redis_primary_loses_no_task_and_kills_no_worker(
    node: RabbitNode, deployment: Deployment, fleet: Fleet, sentinel_group: SentinelGroup
) -> None:
    count = 2000
    figures = Figures("sentinel primary kill -9", tasks=count)
    await asyncio.to_thread(sentinel_group.wait_healthy)  # another test may have killed one
    deployment.store_url = sentinel_group.url  # wait_replicas=1, the default there
    ids = task_ids("sentinel", count)
    workers = [fleet.start("--concurrency", "8") for _ in range(2)]
    for worker in workers:
        await fleet.wait_started(worker)
    app = deployment.app()
    probe = RedisSentinelStore(sentinel_group.url, prefix=deployment.exchange + "-probe")
    await app.connect()
    await probe.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            # 20 senders, paced so that sending goes on through the failover.
            sending = asyncio.create_task(
                publish(app, ids, seconds=0.01, concurrency=20, pause=0.05)
            )
            await eventually(lambda: finished_count(deployment, ids), lambda n: n >= 300)
            assert not sending.done(), "every send returned before the kill: send slower"

            killed = await asyncio.to_thread(sentinel_group.kill_master)
            killed_at, killed_wall = time.monotonic(), datetime.now(UTC)
            figures.kills = 1
            # A store call made right after the kill waits for the new master.
            assert await probe.create("probe", "probe")
            write_back = time.monotonic() - killed_at
            await asyncio.to_thread(sentinel_group.wait_failover, killed.port)
            named = time.monotonic() - killed_at
            # The old primary back (empty: it saved nothing): the sentinels make it a
            # replica of the new master, and the workers' WAIT 1 is answered again.
            await asyncio.to_thread(killed.start)
            restarted = time.monotonic()
            await asyncio.to_thread(sentinel_group.wait_healthy)
            rejoined = time.monotonic() - restarted

            published = await sending
            sent_by = time.monotonic() - killed_at
            result = await verdict(deployment, ids, fleet=fleet, timeout=90)
        figures.record(result)
        events = fleet.events()
        requeued = sum(e.get("event") == "status store unavailable; requeueing" for e in events)
        first_task = _first_success_after(events, killed_wall)
        figures.notes.update(
            write_back=f"{write_back:.2f}s",
            master_named=f"{named:.2f}s",
            first_task_after_kill=f"{first_task:.2f}s" if first_task is not None else "none",
            replica_back_after_restart=f"{rejoined:.1f}s",
            sends_done_after_kill=f"{sent_by:.1f}s",
            requeued_unrecorded=requeued,
        )
        report(figures)

        assert not published.failed, list(published.failed.values())[:3]
        assert len(published.confirmed) == count, "a send raised during the failover"
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": count}
        assert all(w.alive for w in workers), "a worker died during the failover"
        assert write_back < 10, "the store call did not wait for the new master"
        await stop_cleanly(fleet, node)
    finally:
        await probe.close()
        await app.close()


def _first_success_after(events: list[dict[str, Any]], moment: datetime) -> float | None:
    """Seconds from ``moment`` to the first ``task succeeded`` a worker logged after it."""
    after = [
        stamp
        for e in events
        if e.get("event") == "task succeeded"
        and (stamp := datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))) > moment
    ]
    return (min(after) - moment).total_seconds() if after else None
