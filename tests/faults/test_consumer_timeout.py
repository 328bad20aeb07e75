"""Every delivery is settled within RabbitMQ's ``consumer_timeout``: on a node of this
module's own whose timeout is 3 s, a worker with one slot and three queues (one
delivery in flight on each, so two wait in its inbox) gets every task done once, gives
back unstarted what waited too long, and the broker never times its channel out.

RabbitMQ 3.10 checks the timeout on each channel's tick (``rabbit_channel``: on
``tick``, ``evaluate_consumer_timeout`` closes the channel with PRECONDITION_FAILED if
its oldest unacked delivery is older than the timeout), every ``channel_tick_interval``
ms: 60000 by default (``rabbit.app``), so a 3 s timeout would only be enforced after up
to a minute. This node ticks every 500 ms (``advanced.config``; ``rabbitmq.conf`` has
no key for it), which the first test shows: a plain consumer holding one delivery loses
its channel 3-3.5 s after it got it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aio_pika
import pytest
import pytest_asyncio

from taskq import TaskQueue
from taskq.errors import ConfigurationError
from taskq.urls import MEMORY_URL
from tests.conftest import remove_app
from tests.faults import consumer_timeout_app
from tests.faults.conftest import FAST_RECONNECT, _unavailable, with_query
from tests.faults.harness import (
    Deployment,
    Figures,
    Fleet,
    StateWatcher,
    publish,
    report,
    stop_cleanly,
    task_ids,
    verdict,
)
from tests.faults.servers import RabbitNode, rabbitmq_available

#: The broker's consumer_timeout (ms) and the app's (s): kept equal, as taskq asks.
CONSUMER_TIMEOUT_MS = 3000
CONSUMER_TIMEOUT = CONSUMER_TIMEOUT_MS / 1000
#: How often the node's channels check it (ms).
TICK_MS = 500
#: What RabbitMQ 3.10 logs when it closes a channel for a late ack (node log).
BROKER_TIMED_OUT = "has timed out waiting for delivery acknowledgement"
APP_PATH = "tests.faults.consumer_timeout_app:app"
REQUEUED = "delivery waited too long to finish before the broker's consumer timeout"


@pytest.fixture(scope="module")
def short_timeout_node() -> Iterator[RabbitNode]:
    """A node whose consumer_timeout is 3 s, checked every 500 ms; stopped and deleted
    at the end of the module."""
    if not rabbitmq_available():
        _unavailable("rabbitmq-server is not installed: this scenario runs its own node")
    with RabbitNode(
        config=[f"consumer_timeout = {CONSUMER_TIMEOUT_MS}"],
        advanced=f"[{{rabbit, [{{channel_tick_interval, {TICK_MS}}}]}}].",
    ) as node:
        yield node


#: Makes the node write out its buffered log lines (they lag ~1-2 s otherwise).
_FLUSH_LOGS = "[catch M:filesync(Id) || #{id := Id, module := M} <- logger:get_handler_config()]."


def broker_timeouts(node: RabbitNode) -> int:
    """How many times the node closed a channel for a late ack, from its log."""
    node.ctl("eval", _FLUSH_LOGS)
    return sum(
        path.read_text(errors="replace").count(BROKER_TIMED_OUT)
        for path in node.log_base.glob("*.log")
    )


@pytest_asyncio.fixture
async def deployment(short_timeout_node: RabbitNode, redis_url: str) -> Any:
    dep = Deployment(
        broker_url=with_query(short_timeout_node.amqp_url, FAST_RECONNECT),
        store_url=redis_url,
        counter_url=redis_url,
    )
    yield dep
    # Queues and exchanges on the node, records and run counts in Redis.
    await remove_app(dep.app(short_timeout_node.amqp_url), consumer_timeout_app.TASKS, redis_url)


@pytest.fixture
def fleet(deployment: Deployment, tmp_path: Path) -> Iterator[Fleet]:
    workers = Fleet(deployment, tmp_path, app_path=APP_PATH)
    try:
        yield workers
    finally:
        workers.close()


@pytest.mark.timeout(90)
async def test_the_broker_closes_a_channel_that_holds_a_delivery_past_its_consumer_timeout(
    short_timeout_node: RabbitNode,
) -> None:
    """The precondition: the node enforces 3 s, and within a tick of it."""
    node = short_timeout_node
    figures = Figures("consumer_timeout 3s: a plain consumer holds a delivery", tasks=1)
    name = f"taskq-ct-raw-{uuid.uuid4().hex[:8]}"
    logged_before = broker_timeouts(node)
    connection = await aio_pika.connect(node.amqp_url)  # not robust: no channel reopened
    try:
        channel = await connection.channel()
        closed: asyncio.Future[BaseException | None] = asyncio.get_running_loop().create_future()

        def on_close(_: Any, exc: BaseException | None = None) -> None:
            if not closed.done():
                closed.set_result(exc)

        channel.close_callbacks.add(on_close)
        queue = await channel.declare_queue(
            name, durable=True, arguments={"x-queue-type": "quorum"}
        )
        await channel.default_exchange.publish(aio_pika.Message(b"held"), routing_key=name)
        received: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()
        await queue.consume(received.put, no_ack=False)
        await asyncio.wait_for(received.get(), 10)  # held, never acked
        held_since = time.monotonic()
        reason = await asyncio.wait_for(closed, CONSUMER_TIMEOUT + 30)
        closed_after = time.monotonic() - held_since

        # The message went back to its queue, marked redelivered.
        check = await connection.channel()
        back_queue = await check.declare_queue(name, passive=True)
        back = None
        deadline = time.monotonic() + 10
        while back is None and time.monotonic() < deadline:
            back = await back_queue.get(no_ack=True, fail=False)
            if back is None:
                await asyncio.sleep(0.1)
        await back_queue.delete(if_unused=False, if_empty=False)
    finally:
        await connection.close()
    logged = broker_timeouts(node) - logged_before

    figures.notes["closed_after_s"] = round(closed_after, 2)
    figures.notes["broker_logged"] = logged
    report(figures)

    assert "PRECONDITION_FAILED" in repr(reason) or "406" in repr(reason), repr(reason)
    assert "delivery acknowledgement" in str(reason) and "timed out" in str(reason), reason
    # Not before the timeout; within one tick (plus a busy machine's slack) after it.
    assert CONSUMER_TIMEOUT <= closed_after <= CONSUMER_TIMEOUT + TICK_MS / 1000 + 1.5
    assert back is not None and back.body == b"held" and back.redelivered
    assert logged == 1


@pytest.mark.timeout(120)
async def test_a_worker_with_one_slot_and_three_queues_acks_every_delivery_in_time(
    short_timeout_node: RabbitNode, deployment: Deployment, fleet: Fleet
) -> None:
    """Three queues, one slot: each queue has a delivery in flight (prefetch 1), two of
    them waiting in the inbox behind a 1.2 s task. One that could no longer finish within
    0.9 x 3 s of its arrival (waited + the 1.5 s limit > 2.7 s) goes back unstarted."""
    node = short_timeout_node
    per_task = 2
    figures = Figures("consumer_timeout 3s: 1 slot, 3 queues", tasks=per_task * 3)
    logged_before = broker_timeouts(node)
    worker = fleet.start("--concurrency", "1", TASKQ_FAULT_CONSUMER_TIMEOUT=str(CONSUMER_TIMEOUT))
    await fleet.wait_started(worker)
    ids_by_task = {name: task_ids(name, per_task) for name in consumer_timeout_app.TASKS}
    ids = [i for group in ids_by_task.values() for i in group]
    async with deployment.app() as app:
        async with StateWatcher(deployment.store_url, deployment.exchange, ids) as watcher:
            sent = await asyncio.gather(
                *(
                    publish(app, group, task=name, seconds=1.2)
                    for name, group in ids_by_task.items()
                )
            )
            confirmed = [i for p in sent for i in p.confirmed]
            result = await verdict(deployment, confirmed, fleet=fleet, timeout=60)
        statuses = {i: await app.handle(i).status() for i in ids}
    await stop_cleanly(fleet, node)
    events = fleet.events()
    requeues = [e for e in events if str(e.get("event", "")).startswith(REQUEUED)]
    texts = [str(e).lower() for e in events]

    figures.record(result)
    figures.notes["requeues"] = len(requeues)
    figures.notes["max_waited_s"] = max((float(e["waited"]) for e in requeues), default=0.0)
    figures.notes["broker_timeouts"] = broker_timeouts(node) - logged_before
    report(figures)

    assert sorted(confirmed) == sorted(ids)
    result.assert_promise(watcher.regressions)
    assert result.by_state() == {"succeeded": len(ids)}
    assert {i: result.runs.get(i) for i in ids} == dict.fromkeys(ids, 1)
    # A requeue is not an attempt: it never started.
    assert {i: s.attempts if s else None for i, s in statuses.items()} == dict.fromkeys(ids, 1)
    # The broker never gave up on the worker's channel: not in its log, nor seen by the
    # worker (a channel error, a settle on a closed channel, a second connection).
    assert figures.notes["broker_timeouts"] == 0
    assert not [t for t in texts if "timed out" in t or "precondition" in t], texts
    assert not [t for t in texts if "channel is closed" in t or "already closed" in t]
    assert [e.get("event") for e in events].count("broker connected") == 1
    # The guard had work to do: deliveries waited in the inbox behind a running task.
    assert requeues, "the guard never requeued a delivery that waited in the inbox"


def test_a_task_may_not_run_longer_than_half_the_consumer_timeout() -> None:
    """Refused at registration, before any broker is involved."""
    app = TaskQueue(broker=MEMORY_URL, store=MEMORY_URL, consumer_timeout=CONSUMER_TIMEOUT)
    with pytest.raises(ConfigurationError, match="consumer_timeout") as refused:

        @app.task(name="ct.too_long", timeout=2)
        async def too_long() -> None: ...

    assert "1.5s" in str(refused.value)
    assert "ct.too_long" not in app.tasks

    @app.task(name="ct.at_the_ceiling", timeout=1.5)
    async def at_the_ceiling() -> None: ...

    @app.task(name="ct.default")
    async def default() -> None: ...

    assert app.tasks["ct.at_the_ceiling"].time_limit == 1.5
    assert app.tasks["ct.default"].time_limit == CONSUMER_TIMEOUT / 2
    # The scenario's own app keeps to it too.
    limits = [
        consumer_timeout_app.app.tasks[name].time_limit for name in consumer_timeout_app.TASKS
    ]
    assert limits == [consumer_timeout_app.LIMIT] * 3 and consumer_timeout_app.LIMIT <= 1.5
