"""The services themselves fail: the broker restarts or is killed -9, the status store
goes away and comes back, the broker raises a memory alarm. Every confirmed task still
runs afterwards, and publishers and workers reconnect by themselves."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

from taskq.errors import PublishError
from tests.faults.harness import (
    TOUCH,
    Deployment,
    Figures,
    Fleet,
    StateWatcher,
    finished_count,
    publish,
    report,
    resend_until_confirmed,
    stop_cleanly,
    task_ids,
    verdict,
)
from tests.faults.proxy import FaultProxy
from tests.faults.servers import RabbitNode, RedisServer
from tests.helpers import eventually


@pytest.mark.timeout(240)
async def test_the_broker_restarted_and_killed_keeps_every_confirmed_task(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    figures = Figures("4 broker restart + kill -9", tasks=0)
    queued = task_ids("queued", 1000)
    delayed = task_ids("delayed", 100)
    after_restart = task_ids("after", 200)
    during_kill = task_ids("killed", 1000)
    every = queued + delayed + after_restart + during_kill
    figures.tasks = len(every)
    app = deployment.app(publish_timeout=5)
    await app.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, every) as watcher:
            # 1,000 persistent tasks queued with no worker yet, 100 delayed by 5 s.
            first = await publish(app, queued, seconds=0.02)
            sent_delayed = datetime.now(UTC)
            for task_id in delayed:
                await app.send(TOUCH, args=[task_id], task_id=task_id, countdown=5)
            assert not first.failed
            workers = [fleet.start("--concurrency", "8") for _ in range(2)]
            for worker in workers:
                await fleet.wait_started(worker)

            # A broker restart while they drain: connections drop, the data stays.
            await asyncio.to_thread(node.stop_app)
            await asyncio.sleep(1)
            await asyncio.to_thread(node.start_app)
            # The same publisher, reconnected by itself within its publish timeout.
            second = await publish(app, after_restart, seconds=0.02)
            assert not second.failed, list(second.failed.values())[:3]

            # kill -9 of the broker in the middle of publishing 1,000 more.
            killing = asyncio.create_task(publish(app, during_kill, seconds=0.02, concurrency=50))
            await asyncio.sleep(0.1)  # well inside the publishing run (under 1 s)
            assert not killing.done()
            await asyncio.to_thread(node.kill)
            figures.kills = 1
            await asyncio.to_thread(node.start)
            third = await killing
            raised = set(third.failed)
            never = await resend_until_confirmed(app, third.failed)
            assert not never, f"{len(never)} publishes never went through after the restart"

            result = await verdict(deployment, every, fleet=fleet, timeout=90)
        figures.record(result)
        figures.cuts = 2  # one restart, one kill
        figures.notes.update(raised_at_kill=len(raised), confirmed_at_kill=len(third.confirmed))
        report(figures)

        assert raised, "the kill hit no publish in flight"
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": len(every)}
        assert set(result.ran_twice) <= raised | set(queued) | set(during_kill)
        # The delayed ones waited in the delay queues through the restart, then ran no
        # earlier than their delay.
        for task_id in delayed:
            status = await app.handle(task_id).status()
            assert status is not None and status.started_at is not None
            assert status.started_at - sent_delayed >= timedelta(seconds=4.9), status
        assert all(w.alive for w in workers), "a worker died instead of reconnecting"
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


@pytest.mark.timeout(180)
async def test_the_status_store_going_away_mid_run_acks_nothing_without_its_outcome(
    node: RabbitNode, deployment: Deployment, fleet: Fleet, private_redis: RedisServer
) -> None:
    count = 1000
    figures = Figures("4c status store outage", tasks=count)
    deployment.store_url = private_redis.url  # the run counter stays on the shared Redis
    ids = task_ids("store", count)
    workers = [fleet.start("--concurrency", "8") for _ in range(2)]
    app = deployment.app()
    await app.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            published = await publish(app, ids, seconds=0.05)
            assert not published.failed
            await eventually(lambda: finished_count(deployment, ids), lambda n: n >= count // 5)
            # Away (SHUTDOWN SAVE: connections drop, the port closes) for 3 s, then back
            # with what it held.
            await asyncio.to_thread(private_redis.stop, save=True)
            down = time.monotonic()
            await asyncio.sleep(3)
            await asyncio.to_thread(private_redis.start)
            figures.notes["down"] = f"{time.monotonic() - down:.1f}s"
            result = await verdict(deployment, ids, fleet=fleet, timeout=90)
        figures.record(result)
        figures.cuts = 1
        requeued = sum(
            e.get("event") == "status store unavailable; requeueing" for e in fleet.events()
        )
        figures.notes["requeued_for_store"] = requeued
        report(figures)

        # An ack without its outcome would leave a task "started" for good: lost here.
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": count}
        assert requeued > 0, "the outage hit no task"
        assert all(w.alive for w in workers)
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


async def alarms(node: RabbitNode) -> str:
    return await asyncio.to_thread(node.ctl, "eval", "rabbit_alarm:get_alarms().")


@pytest.mark.timeout(180)
async def test_a_memory_alarm_fails_publishes_at_their_timeout_while_consumers_drain(
    node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    count = 600
    figures = Figures("4d memory alarm", tasks=count + 2)
    ids = task_ids("alarm", count)
    app = deployment.app(publish_timeout=2)
    await app.connect()
    try:
        published = await publish(app, ids, seconds=0.05)
        assert not published.failed
        worker = fleet.start("--concurrency", "8")  # about 160 tasks/s: 4 s of work
        await fleet.wait_started(worker)
        try:
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.0000001")
            await eventually(lambda: alarms(node), lambda found: "memory" in found, timeout=10)
            done_at_alarm = await finished_count(deployment, ids)

            began = time.monotonic()
            blocked_id = f"{deployment.exchange}-blocked"
            with pytest.raises(PublishError):
                await app.send(TOUCH, args=[blocked_id], task_id=blocked_id)
            raised_after = time.monotonic() - began
            await asyncio.sleep(1)
            done_in_alarm = await finished_count(deployment, ids)
        finally:
            await asyncio.to_thread(node.ctl, "set_vm_memory_high_watermark", "0.4")
        await eventually(lambda: alarms(node), lambda found: "memory" not in found, timeout=10)
        # Publishing resumes once the alarm clears, on the same connection.
        began = time.monotonic()
        after_id = f"{deployment.exchange}-after"
        await app.send(TOUCH, args=[after_id], task_id=after_id)
        resumed_after = time.monotonic() - began
        result = await verdict(deployment, [*ids, after_id], fleet=fleet, timeout=60)
        blocked = await app.handle(blocked_id).status()
        figures.record(result)
        figures.notes.update(
            publish_raised=f"{raised_after:.1f}s",
            drained_during_alarm=done_in_alarm - done_at_alarm,
            publish_after_clear=f"{resumed_after:.1f}s",
            blocked_one_ran_later=blocked is not None,
        )
        report(figures)

        assert 1.5 <= raised_after < 5, "a blocked publish must raise at its timeout"
        assert done_in_alarm > done_at_alarm, "consumers stopped draining during the alarm"
        result.assert_promise()
        assert result.by_state() == {"succeeded": count + 1}
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


async def test_a_stalled_status_store_fails_calls_at_their_timeout_instead_of_hanging(
    redis_url: str, make_proxy: Callable[[int], FaultProxy]
) -> None:
    """A Redis that stops answering (half-open connection, stalled network) turns into a
    StoreError after the operation timeout, which workers answer by requeueing; the
    next call after it answers again goes through."""
    from taskq.errors import StoreError
    from taskq.stores.redis import OPERATION_TIMEOUT, RedisStore

    default = RedisStore(redis_url, prefix="taskq-stall")
    await default.connect()
    try:
        kwargs = default._conn.client.connection_pool.connection_kwargs  # type: ignore[union-attr]
        assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == OPERATION_TIMEOUT
    finally:
        await default.close()

    proxy = make_proxy(urlsplit(redis_url).port or 6379)
    store = RedisStore(
        proxy.url(redis_url) + "?socket_timeout=0.5&socket_connect_timeout=0.5",
        prefix="taskq-stall",
    )
    await store.connect()
    try:
        assert await store.get("nothing") is None
        proxy.stall()
        started = time.monotonic()
        with pytest.raises(StoreError, match="Timeout"):
            await store.get("nothing")
        assert time.monotonic() - started < 3.0
        proxy.resume()
        assert await eventually(lambda: _get_or_error(store), lambda r: r == "none", timeout=10)
    finally:
        proxy.resume()
        await store.close()


async def _get_or_error(store: Any) -> str:
    from taskq.errors import StoreError

    try:
        return "none" if await store.get("nothing") is None else "record"
    except StoreError:
        return "error"
