"""Connections that break between taskq and RabbitMQ: cut (reset), stalled (half-open),
during publishing and during consuming. Everything goes through a
:class:`~tests.faults.proxy.FaultProxy` in front of the private node."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from collections.abc import Callable

import aio_pika
import aiormq.exceptions
import pytest

from taskq.errors import BrokerError, PublishError
from tests.faults.conftest import FAST_RECONNECT, with_query
from tests.faults.harness import (
    TOUCH,
    Deployment,
    Figures,
    Fleet,
    Published,
    StateWatcher,
    Verdict,
    publish,
    queue_depths,
    report,
    resend_until_confirmed,
    running_count,
    stop_cleanly,
    task_ids,
    verdict,
)
from tests.faults.proxy import FaultProxy
from tests.faults.servers import RabbitNode
from tests.helpers import eventually

MakeProxy = Callable[[int], FaultProxy]


async def cut_every(proxy: FaultProxy, seconds: float, times: int, until: asyncio.Task) -> int:
    """Cut every connection through ``proxy`` every ``seconds``, at most ``times``
    times and only while ``until`` runs; how many cuts were made."""
    cuts = 0
    while cuts < times and not until.done():
        await asyncio.sleep(seconds)
        if until.done():
            break
        proxy.cut()
        cuts += 1
    return cuts


@pytest.mark.timeout(180)
async def test_connections_cut_while_publishing_lose_no_confirmed_task(
    node: RabbitNode, deployment: Deployment, fleet: Fleet, make_proxy: MakeProxy
) -> None:
    """Every publish returns a handle (confirmed) or raises a BrokerError; re-sending
    each raised one with its id ends with each task ``succeeded`` exactly once. (Enough
    tasks for publishing to outlast several cuts: concurrent sends share a window of
    confirms, about 10,000/s here.)"""
    count = 6000
    figures = Figures("2 cuts while publishing", tasks=count)
    proxy = make_proxy(node.port)
    ids = task_ids("pub", count)
    fleet.start("--concurrency", "32")  # straight to the node
    fleet.start("--concurrency", "32")
    publisher = deployment.app(with_query(proxy.url(node.amqp_url), FAST_RECONNECT),
                               publish_timeout=5)  # fmt: skip
    await publisher.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            publishing = asyncio.create_task(publish(publisher, ids, concurrency=50))
            figures.cuts = await cut_every(proxy, 0.4, 10, publishing)
            first = await publishing
            # Re-send what raised, with its id, until all went through (bounded).
            raised = set(first.failed)
            failed = await resend_until_confirmed(publisher, raised, pause=0.2)
            result = await verdict(deployment, ids, fleet=fleet, timeout=90)
        figures.record(result)
        figures.notes["raised"] = len(raised)
        report(figures)

        assert figures.cuts >= 3, "publishing ended before the connections were cut a few times"
        assert raised, "no publish was hit by a cut"
        for exc in first.failed.values():
            assert isinstance(exc, BrokerError), repr(exc)
        assert not failed, f"{len(failed)} publishes never went through"
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": count}
        # A second run is only possible for a message published twice: one whose
        # first publish raised although the broker had taken it.
        assert set(result.ran_twice) <= raised
        await stop_cleanly(fleet, node)
    finally:
        await publisher.close()


@pytest.mark.timeout(180)
async def test_worker_connections_cut_mid_run_lose_nothing_and_workers_resume(
    node: RabbitNode, deployment: Deployment, fleet: Fleet, make_proxy: MakeProxy
) -> None:
    count = 2000
    figures = Figures("3 worker connections cut mid-run", tasks=count)
    proxy = make_proxy(node.port)
    deployment.broker_url = with_query(proxy.url(node.amqp_url), FAST_RECONNECT)
    ids = task_ids("cut", count)
    workers = [fleet.start("--concurrency", "16") for _ in range(3)]
    for worker in workers:
        await fleet.wait_started(worker)
    app = deployment.app(node.amqp_url)  # the publisher goes straight to the node
    await app.connect()
    try:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:

            async def run() -> tuple[Published, Verdict]:
                published = await publish(app, ids, seconds=0.1)
                # 2,000 tasks take about 8 s here; a run that has not ended in 60 s is
                # stuck, and fails with its open ids instead of at the test's timeout.
                done = await verdict(deployment, published.confirmed, fleet=fleet, timeout=60)
                return published, done

            running = asyncio.create_task(run())
            figures.cuts = await cut_every(proxy, 1.5, 6, running)
            published, result = await running
        figures.record(result)
        figures.notes["reconnects"] = proxy.accepted - 6  # 2 connections per worker
        report(figures)

        assert not published.failed
        assert figures.cuts >= 3, "the run ended before the workers were cut a few times"
        if result.lost:  # what the workers said about their reconnects, for the report
            said = Counter(
                str(e.get("event"))
                for e in fleet.events()
                if "consum" in str(e.get("event")) or "onnect" in str(e.get("event"))
            )
            print(f"lost {len(result.lost)}; the workers said {dict(said)}")
        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": count}
        assert all(w.alive for w in workers), "a worker died instead of reconnecting"
        assert proxy.accepted >= 6 + 2 * 3, "the workers did not reconnect after each cut"
        await stop_cleanly(fleet, node)
    finally:
        await app.close()


@pytest.mark.timeout(120)
async def test_a_stalled_connection_is_given_up_by_heartbeat_and_reconnected(
    node: RabbitNode, deployment: Deployment, make_proxy: MakeProxy
) -> None:
    """``?heartbeat=2``, then a black hole (sockets open, nothing forwarded): the
    client gives the half-open connection up by itself, a publish meanwhile raises
    at its timeout instead of hanging, and once the path is back it reconnects."""
    figures = Figures("heartbeat stall", tasks=3)
    proxy = make_proxy(node.port)
    url = with_query(proxy.url(node.amqp_url), f"heartbeat=2&{FAST_RECONNECT}")
    app = deployment.app(url, publish_timeout=3)
    await app.connect()
    try:
        await app.send(TOUCH, args=["before"], task_id=f"{deployment.exchange}-before")
        # Observed on the driver's connection: when did it notice?
        connection = app.broker._publisher.connection  # type: ignore[attr-defined]
        noticed = asyncio.Event()
        connection.close_callbacks.add(lambda *_: noticed.set())

        proxy.stall()
        stalled = time.monotonic()
        with pytest.raises(PublishError):
            await app.send(TOUCH, args=["during"], task_id=f"{deployment.exchange}-during")
        raised_after = time.monotonic() - stalled
        await asyncio.wait_for(noticed.wait(), 30)
        detected = time.monotonic() - stalled

        proxy.resume()
        resumed = time.monotonic()
        await app.send(TOUCH, args=["after"], task_id=f"{deployment.exchange}-after")
        reconnected = time.monotonic() - resumed
        figures.cuts = 1
        figures.notes.update(
            heartbeat="2s",
            detected=f"{detected:.1f}s",
            publish_raised=f"{raised_after:.1f}s",
            publish_after_resume=f"{reconnected:.1f}s",
        )
        report(figures)
        assert 2.5 <= raised_after < 6, "a publish must raise at its timeout, not hang"
        # aiormq gives up after (heartbeat + 1) * 3 s without a frame: 9 s here.
        assert detected < 15
        assert reconnected < 10
    finally:
        await app.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("held", ["confirm", "publish"])
async def test_a_publish_in_flight_when_its_connection_drops_raises_unless_confirmed(
    node: RabbitNode, deployment: Deployment, make_proxy: MakeProxy, held: str
) -> None:
    """The proxy holds back the broker's answer (the message is taken, its confirm
    never arrives) or the publish itself (nothing reaches the broker), then cuts:
    either way the publish raises PublishError. Returning would claim a confirm that
    provably never reached the client."""
    proxy = make_proxy(node.port)
    app = deployment.app(with_query(proxy.url(node.amqp_url), FAST_RECONNECT), publish_timeout=8)
    await app.connect()
    try:
        await app.send(TOUCH, args=["warm-up"], task_id=f"{deployment.exchange}-warm")
        proxy.stall(upstream=held == "publish", downstream=held == "confirm")
        down_before = proxy.bytes_down
        sending = asyncio.create_task(
            app.send(TOUCH, args=["x"], task_id=f"{deployment.exchange}-held")
        )
        await asyncio.sleep(0.5)
        assert not sending.done(), "returned while its confirm was held back"
        proxy.cut()
        proxy.resume()
        with pytest.raises(PublishError):
            await sending
        assert proxy.bytes_down == down_before or held == "publish"
        ready = (await queue_depths(node, deployment.exchange))[
            f"{deployment.exchange}.fault.touch"
        ]
        # Taken by the broker only when the publish itself went through.
        assert ready == (2 if held == "confirm" else 1)
    finally:
        await app.close()


@pytest.mark.timeout(120)
async def test_publishes_cut_in_a_burst_return_only_when_the_broker_has_them(
    node: RabbitNode, deployment: Deployment, make_proxy: MakeProxy
) -> None:
    """Many publishes in flight, then a cut: each returned one's message is in the
    queue (confirmed means taken); the others raised PublishError."""
    proxy = make_proxy(node.port)
    app = deployment.app(with_query(proxy.url(node.amqp_url), FAST_RECONNECT), publish_timeout=8)
    await app.connect()
    # Enough that the cut finds publishes in flight: a window of them is one write, and
    # the proxy's slowing delays each write, not each message.
    ids = task_ids("burst", 20_000)
    publishing: asyncio.Task[Published] | None = None
    try:
        proxy.slow(0.002)  # keep many publishes in flight when the cut comes
        publishing = asyncio.create_task(publish(app, ids, concurrency=200))
        # Cut once the broker has taken some (so some are confirmed), not after a fixed
        # time: how fast they go depends on the machine and on how sends are batched.
        queue = f"{deployment.exchange}.fault.touch"
        direct = await aio_pika.connect(node.amqp_url)  # not through the slowed proxy
        async with direct:
            for _ in range(500):
                await asyncio.sleep(0.02)
                try:
                    async with direct.channel() as channel:
                        declared = await channel.declare_queue(queue, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    continue  # not declared by the first publish yet
                if (declared.declaration_result.message_count or 0) >= 200:
                    break
        proxy.cut()
        proxy.resume()
        published = await publishing
        assert published.failed and published.confirmed
        for exc in published.failed.values():
            assert isinstance(exc, PublishError), repr(exc)
        depth = (await queue_depths(node, deployment.exchange))[
            f"{deployment.exchange}.fault.touch"
        ]
        assert len(published.confirmed) <= depth <= len(ids)
    finally:
        if publishing is not None and not publishing.done():  # the test failed first
            publishing.cancel()
            await asyncio.gather(publishing, return_exceptions=True)
        await app.close()


@pytest.mark.timeout(120)
async def test_sigterm_while_the_broker_is_unreachable_still_stops_the_worker(
    node: RabbitNode, deployment: Deployment, fleet: Fleet, make_proxy: MakeProxy
) -> None:
    """A worker told to stop while its broker is away must not wait for the broker to
    come back: its unacked messages go back with the lost connection anyway."""
    figures = Figures("SIGTERM with the broker away", tasks=8)
    proxy = make_proxy(node.port)
    deployment.broker_url = with_query(proxy.url(node.amqp_url), FAST_RECONNECT)
    worker = fleet.start("--concurrency", "4", "--grace", "5")
    await fleet.wait_started(worker)
    app = deployment.app(node.amqp_url)
    await app.connect()
    try:
        ids = task_ids("away", 8)
        published = await publish(app, ids, seconds=3.0)
        assert not published.failed
        await eventually(lambda: running_count(deployment, ids), lambda n: n == 4)
        proxy.refuse()  # cut, and no reconnect gets through
        await asyncio.sleep(1.5)
        began = time.monotonic()
        worker.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(worker.proc.wait, 30)
        took = time.monotonic() - began
        assert code == 0
        assert took < 5 + 5, f"stopping took {took:.1f}s with the broker away"
        proxy.resume()
        # Nothing lost: the interrupted four and the waiting four run on the next worker.
        fleet.start("--concurrency", "8")
        result = await verdict(deployment, ids, fleet=fleet, timeout=30)
        figures.record(result)
        figures.cuts = 1
        figures.notes["stopped_in"] = f"{took:.1f}s"
        report(figures)
        result.assert_promise()
        assert result.by_state() == {"succeeded": 8}
        await stop_cleanly(fleet, node)
    finally:
        await app.close()
