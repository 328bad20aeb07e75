"""``taskq queues`` against a real management plugin: on a node of this module's own
with ``rabbitmq_management`` enabled (its HTTP listener on a free port of 127.0.0.1), a
queue with three tasks, one of them held unacked by a consumer, shows ready 2, unacked 1,
consumers 1; without APP_PATH the queues bound to the exchange are found through the API.

tests/test_inspect.py covers the same paths against a stand-in HTTP server; this one
checks the real plugin's paths, columns and credentials. The plugin's figures are
samples: this node takes them every 500 ms (``collect_statistics_interval``, 5 s by
default) and its quorum queues report on a 500 ms tick (``quorum_tick_interval``, 5 s
by default; ``advanced.config`` only). A new queue still shows up in the API some 4-5 s
after it was declared, so the test asks again until the figures catch up.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskq import TaskQueue
from taskq.cli import RET_OK
from taskq.topology import QueueSpec
from tests.cli_app import TASK_NAMES
from tests.contract.test_broker_contract import Inbox
from tests.deployment import environment, tear_down
from tests.faults.conftest import _unavailable
from tests.faults.servers import RabbitNode, free_port, rabbitmq_available
from tests.helpers import eventually
from tests.test_cli import taskq

APP_PATH = "tests.cli_app:app"


@pytest.fixture(scope="module")
def management_node() -> Iterator[tuple[RabbitNode, str]]:
    """A node with the management plugin, and its API's URL; stopped and deleted at the
    end of the module."""
    if not rabbitmq_available():
        _unavailable("rabbitmq-server is not installed: this scenario runs its own node")
    port = free_port()
    with RabbitNode(
        plugins=["rabbitmq_management"],  # brings rabbitmq_management_agent, _web_dispatch
        config=[
            f"management.tcp.port = {port}",
            "management.tcp.ip = 127.0.0.1",
            "collect_statistics_interval = 500",
        ],
        # A quorum queue reports its figures on each tick, every 5 s by default.
        advanced="[{rabbit, [{quorum_tick_interval, 500}]}].",
    ) as node:
        yield node, f"http://127.0.0.1:{port}/"


@pytest.mark.timeout(60)
async def test_queues_reads_ready_unacked_and_consumers_from_a_real_management_api(
    management_node: tuple[RabbitNode, str], redis_url: str
) -> None:
    node, management_url = management_node
    exchange = f"taskq-mgmt-{uuid.uuid4().hex[:8]}"
    env = environment(broker_url=node.amqp_url, store_url=redis_url, exchange=exchange)
    add, dead = f"{exchange}.cli.add", f"{exchange}.dead"
    app = TaskQueue(broker=node.amqp_url, store=redis_url, exchange=exchange)
    await app.connect()
    try:
        # Given three tasks sent, one of them delivered to a consumer that never settles it
        for n in range(3):
            await app.send("cli.add", [n, n])
        inbox = Inbox()
        consumer = await app.broker.consume([QueueSpec("cli.add")], inbox, prefetch=1)
        try:
            await inbox.get()  # held while we look

            async def shown(*args: str) -> tuple[str, dict[str, dict[str, Any]]]:
                ran = await taskq(
                    "queues", *args, "--json", "--management-url", management_url, env=env
                )
                assert ran.returncode == RET_OK, ran.stderr
                return ran.stderr, {row["name"]: row for row in json.loads(ran.stdout)}

            def counts(seen: tuple[str, dict[str, dict[str, Any]]]) -> tuple[Any, ...]:
                row = seen[1].get(add, {})
                return (row.get("ready"), row.get("unacked"), row.get("consumers"))

            # When an operator asks, with the app and without it (once the samples are in)
            stderr, of_app = await eventually(
                lambda: shown(APP_PATH), lambda s: counts(s) == (2, 1, 1), timeout=15
            )
            bound_stderr, of_exchange = await eventually(
                lambda: shown(), lambda s: counts(s) == (2, 1, 1), timeout=15
            )
        finally:
            await consumer.close()
    finally:
        await app.close()
        await tear_down(node.amqp_url, redis_url, exchange, TASK_NAMES)

    # Then the figures came from the API (no fallback warning), unacked included
    assert "management API" not in stderr + bound_stderr
    assert list(of_app) == [f"{exchange}.{task}" for task in TASK_NAMES] + [dead]
    expected = {"name": add, "task": "cli.add", "ready": 2, "unacked": 1, "consumers": 1}
    # The node's management API says where each queue lives: a single node here.
    where = {"type": "quorum", "leader": of_app[add]["leader"], "members": [of_app[add]["leader"]]}
    assert of_app[add] == {**expected, **where, "declared": True}
    assert str(of_app[add]["leader"]).startswith("taskq-fault-")
    assert of_app[dead]["task"] is None
    # and without APP_PATH, the one task queue bound to the exchange, then the dead letters
    assert list(of_exchange) == [add, dead]
    assert of_exchange[add] == of_app[add]


@pytest.mark.timeout(60)
async def test_the_dashboard_reads_unacked_counts_from_a_real_management_api(
    management_node: tuple[RabbitNode, str], redis_url: str
) -> None:
    import httpx

    from taskq.dashboard import create_app

    node, management_url = management_node
    exchange = f"taskq-mgmt-{uuid.uuid4().hex[:8]}"
    add = f"{exchange}.cli.add"
    app = TaskQueue(broker=node.amqp_url, store=redis_url, exchange=exchange)
    app.task(name="cli.add")(_add)
    await app.connect()
    dashboard = create_app(app, poll_interval=0.2, management_url=management_url)
    try:
        # Given three tasks sent, one of them held unacked by a consumer
        for n in range(3):
            await app.send("cli.add", [n, n])
        inbox = Inbox()
        consumer = await app.broker.consume([QueueSpec("cli.add")], inbox, prefetch=1)
        try:
            await inbox.get()
            transport = httpx.ASGITransport(app=dashboard)
            async with httpx.AsyncClient(transport=transport, base_url="http://dash") as client:

                async def row() -> dict[str, Any]:
                    shown = (await client.get("/api/queues")).json()
                    return next((q for q in shown["queues"] if q["queue"] == add), {})

                # Then the page and /metrics show it, once the plugin's samples are in
                found = await eventually(
                    row,
                    lambda r: (r.get("ready"), r.get("unacked"), r.get("consumers")) == (2, 1, 1),
                    timeout=15,
                )
                assert found["task"] == "cli.add"
                metrics = (await client.get("/metrics")).text
                assert f'taskq_queue_unacked{{queue="{add}"}} 1' in metrics
        finally:
            await consumer.close()
    finally:
        await dashboard.state.live.stop()
        await app.close()
        await tear_down(node.amqp_url, redis_url, exchange, TASK_NAMES)


async def _add(x: int, y: int) -> int:
    return x + y
