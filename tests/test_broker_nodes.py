"""Several broker nodes (issue 17): a list of URLs in every form taskq takes one, each
URL masked wherever it is shown, and a connection that goes to the first node that
answers and on to the next when it loses its node.

The nodes here are proxies in front of the one shared RabbitMQ (a proxy that refuses
is a node that is down); three real nodes are in tests/faults/test_cluster.py.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from structlog.testing import capture_logs

from taskq import TaskQueue
from taskq.brokers import broker_from_url
from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.amqp_nodes import BrokerNode, NodesConnection, next_node
from taskq.brokers.base import Delivery
from taskq.errors import BrokerConnectionError, ConfigurationError, QueueMismatch
from taskq.settings import TaskqSettings
from taskq.topology import REPLICAS_ARGUMENT, QueueSpec, Topology
from taskq.urls import join_urls, mask_url, scrub, split_urls
from tests.broker_nodes import closed_port
from tests.broker_nodes import proxies as proxies  # a fixture, used by name
from tests.faults.proxy import FaultProxy

TASK = QueueSpec("nodes.job")
SECRET = "n0de-s3cret"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in TaskqSettings.model_fields:
        monkeypatch.delenv(TaskqSettings.env_name(name), raising=False)


def _on_port(url: str, port: int, *, password: str | None = None, query: str = "") -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password or parts.password}@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc, query=query))


# -- the forms of a list ------------------------------------------------------------


def test_a_list_is_a_sequence_or_one_string_separated_by_semicolons() -> None:
    urls = ["amqp://u:p@h1/v", "amqp://u:p@h2/v", "amqps://u:p@h3/v"]
    assert split_urls(urls) == urls
    assert split_urls(" amqp://u:p@h1/v ;amqp://u:p@h2/v; amqps://u:p@h3/v") == urls
    assert split_urls("amqp://u:p@h1/v") == ["amqp://u:p@h1/v"]
    assert split_urls(join_urls(urls)) == urls


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("amqp://h1/;;amqp://h2/", "empty entry"),
        ("amqp://h1/;", "empty entry"),
        ([], "empty"),
        (["amqp://h1/", "amqp://h2/;amqp://h3/"], "itself a list"),
        ("amqp://h1/;amqp://h1/", "given twice"),
        (f"amqp://u:{SECRET[:4]};{SECRET[4:]}@h1/", "%3B"),
    ],
)
def test_a_malformed_list_is_refused_saying_why(given: Any, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says) as caught:
        split_urls(given)
    assert SECRET[4:] not in str(caught.value)


def test_every_url_of_a_list_is_masked_and_scrubbed() -> None:
    listed = f"amqp://guest:guest@h1:5672/v;amqps://app:{SECRET}@h2/v?heartbeat=5"
    assert mask_url(listed) == "amqp://guest:***@h1:5672/v;amqps://app:***@h2/v?heartbeat=5"
    message = f"connect to {listed} failed; node 2 said: bad password {SECRET}"
    assert SECRET not in scrub(message, listed)
    assert "amqps://app:***@h2/v?heartbeat=5" in scrub(message, listed)
    # One URL whose unencoded password holds a ';' is still one URL when masked.
    assert mask_url(f"redis://:{SECRET[:4]};{SECRET[4:]}@h/0") == "redis://:***@h/0"


# -- where a list is given ------------------------------------------------------------


def test_the_app_takes_a_list_and_the_environment_takes_the_string(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    urls = [f"amqp://app:{SECRET}@h{n}:5672/prod" for n in (1, 2, 3)]
    app = TaskQueue(broker=urls)
    assert app.settings.broker_url == join_urls(urls)
    assert isinstance(app.broker, AmqpBroker)
    assert app.broker.display_url == join_urls(
        [f"amqp://app:***@h{n}:5672/prod" for n in (1, 2, 3)]
    )
    for shown in (repr(app), repr(app.broker), repr(app.settings), str(app.settings.display())):
        assert SECRET not in shown

    monkeypatch.setenv("TASKQ_BROKER_URL", join_urls(urls))
    from_env = TaskQueue()
    assert isinstance(from_env.broker, AmqpBroker)
    assert from_env.broker.display_url == app.broker.display_url


def test_a_list_mixes_tls_and_plain_nodes_but_not_other_brokers() -> None:
    topology = Topology("nodes")
    assert isinstance(broker_from_url("amqp://h1/;amqps://h2/", topology), AmqpBroker)
    with pytest.raises(ConfigurationError, match="unsupported broker URL"):
        broker_from_url("amqp://h1/;redis://h2/", topology)
    with pytest.raises(ConfigurationError):
        broker_from_url("memory://;amqp://h2/", topology)


def test_each_node_keeps_its_own_options() -> None:
    own = BrokerNode.from_url("amqp://u:p@h1/vh?heartbeat=5")
    default = BrokerNode.from_url("amqp://other:q@h2/other")
    assert own.target.query["heartbeat"] == "5"
    assert default.target.query["heartbeat"] == "30"  # taskq's default, filled in
    assert (own.target.user, own.target.path) == ("u", "/vh")
    assert (default.target.user, default.target.path) == ("other", "/other")
    with pytest.raises(ConfigurationError, match="heartbeat=x"):
        AmqpBroker("amqp://h1/;amqp://h2/?heartbeat=x", Topology("nodes"))


def test_after_losing_a_node_the_next_one_is_tried_wrapping_around() -> None:
    assert [next_node(i, 3) for i in range(3)] == [1, 2, 0]
    assert next_node(0, 1) == 0


# -- connecting and failing over, against the real broker -------------------------


async def test_the_first_node_that_answers_is_used_in_the_order_given(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    closed = _on_port(amqp_url, closed_port(), password=SECRET)
    nodes = [closed, proxies[1].url(amqp_url), proxies[0].url(amqp_url)]
    broker = AmqpBroker(nodes, Topology(exchange), publish_timeout=5.0)
    try:
        await broker.connect()
        # The closed port was tried first, then the second URL, which answered.
        assert broker.node_url() == mask_url(nodes[1])
        assert (proxies[1].connections, proxies[0].connections) == (1, 0)
        await broker.publish(TASK, b"{}", task_id="t-1")
    finally:
        await broker.destroy([TASK.task])
        await broker.close()


async def test_when_no_node_answers_the_error_names_each_node_masked(amqp_url: str) -> None:
    nodes = [_on_port(amqp_url, closed_port(), password=SECRET) for _ in range(2)]
    broker = AmqpBroker(nodes, Topology("nodes-none"), publish_timeout=2.0)
    with pytest.raises(BrokerConnectionError) as caught:
        await broker.connect()
    message = str(caught.value)
    assert SECRET not in message
    for node in nodes:
        assert mask_url(node) in message
    await broker.close()


async def test_a_lost_node_is_left_for_the_next_and_work_goes_on(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    """The publisher and the consumer each lose their node; both go on with the next
    node (not back to the first), consume again and publish again."""
    nodes = [proxy.url(amqp_url) for proxy in proxies]
    broker = AmqpBroker(nodes, Topology(exchange), publish_timeout=5.0)
    received: asyncio.Queue[Delivery] = asyncio.Queue()

    async def keep(delivery: Delivery) -> None:
        await delivery.ack()
        received.put_nowait(delivery)

    try:
        await broker.consume([TASK], keep, prefetch=10)
        await broker.publish(TASK, b"{}", task_id="before")
        assert (await asyncio.wait_for(received.get(), 5.0)).correlation_id == "before"
        assert broker.node_url() == mask_url(nodes[0])

        with capture_logs() as logs:
            proxies[0].refuse()  # node 0 dies: its connections reset, new ones refused
            await _eventually_connected(broker, mask_url(nodes[1]))
            await broker.publish(TASK, b"{}", task_id="after")
            assert (await asyncio.wait_for(received.get(), 10.0)).correlation_id == "after"
        lost = [e for e in logs if e["event"] == "broker node lost; trying the next"]
        assert lost and {e["next"] for e in lost} == {mask_url(nodes[1])}
        assert proxies[1].connections == 2  # publisher and consumer, both on node 1
        assert proxies[2].connections == 0
    finally:
        proxies[0].resume()
        await broker.destroy([TASK.task])
        await broker.close()


async def test_a_workers_own_control_and_broadcast_queues_come_back_on_the_next_node(
    amqp_url: str, exchange: str, proxies: list[FaultProxy]
) -> None:
    """Exclusive queues go with the connection that owned them: after its node died,
    the worker's control and broadcast queues are declared again on the next node and
    their consumers resume."""
    nodes = [proxy.url(amqp_url) for proxy in proxies]
    broker = AmqpBroker(nodes, Topology(exchange), publish_timeout=5.0)
    controls: asyncio.Queue[bytes] = asyncio.Queue()
    calls: asyncio.Queue[Delivery] = asyncio.Queue()

    async def called(delivery: Delivery) -> None:
        await delivery.ack()
        calls.put_nowait(delivery)

    try:
        await broker.consume_control("w-1", controls.put)
        await broker.consume_broadcast(["nodes.tell"], "w-1", called, prefetch=10)
        proxies[0].refuse()
        await _eventually_connected(broker, mask_url(nodes[1]))
        # Best effort until the consumers are back: a control message or a broadcast
        # sent before the queue is declared again reaches no one.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while controls.empty() or calls.empty():
            assert loop.time() < deadline, (controls.qsize(), calls.qsize())
            await broker.publish_control(b'{"cancel": "t-1"}')
            await broker.publish_broadcast("nodes.tell", b"{}", task_id="b-1", required=False)
            await asyncio.sleep(0.2)
        assert await controls.get() == b'{"cancel": "t-1"}'
        assert (await calls.get()).correlation_id == "b-1"
        assert proxies[0].connections == 0
    finally:
        proxies[0].resume()
        await broker.destroy(["nodes.tell"])
        await broker.close()


async def _eventually_connected(broker: AmqpBroker, node: str, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while broker.node_url() != node:
        assert loop.time() < deadline, f"still on {broker.node_url()}"
        await asyncio.sleep(0.05)


async def test_a_round_of_dead_nodes_waits_the_reconnect_interval_then_starts_again(
    amqp_url: str,
) -> None:
    # The first URL's reconnect policy holds for the connection, whichever node it is on.
    nodes = [
        BrokerNode.from_url(_on_port(amqp_url, closed_port(), query=f"reconnect_interval={n}"))
        for n in (7, 2, 2)
    ]
    connection = NodesConnection(nodes, start=2)
    assert connection.node == nodes[2]
    assert connection.reconnect_interval == 0.0  # nothing failed yet
    # Two failures: a node of the round is untried, no pause; three: the whole round.
    for failures, pause in ((1, 0.0), (2, 0.0), (3, 7.0), (4, 7.0)):
        connection._failures = failures
        assert connection.reconnect_interval == pause
    await connection.close()


# -- replicas ----------------------------------------------------------------------


def test_queue_replicas_goes_into_every_quorum_queue_and_only_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = TaskQueue(queue_replicas=3)
    t = app.topology
    assert t.queue_replicas == 3
    for arguments in (
        t.queue_arguments("quorum"),
        t.dead_queue_arguments(),
        t.delay_queue_arguments(4),
        t.scheduler_queue_arguments(),
    ):
        assert arguments[REPLICAS_ARGUMENT] == 3
    assert REPLICAS_ARGUMENT not in t.queue_arguments("classic")
    # Unset: exactly the arguments declared before the option existed.
    assert REPLICAS_ARGUMENT not in TaskQueue().topology.queue_arguments("quorum")

    monkeypatch.setenv("TASKQ_QUEUE_REPLICAS", "2")
    assert TaskQueue().topology.queue_replicas == 2
    monkeypatch.setenv("TASKQ_QUEUE_REPLICAS", "0")
    with pytest.raises(ConfigurationError, match="TASKQ_QUEUE_REPLICAS"):
        TaskQueue()
    with pytest.raises(ConfigurationError, match="queue_replicas"):
        TaskQueue(queue_replicas=0)


async def test_declarers_that_disagree_on_replicas_get_a_queue_mismatch(
    amqp_url: str, exchange: str
) -> None:
    """RabbitMQ checks x-quorum-initial-group-size like any queue argument: every
    process declaring a queue must be given the same queue_replicas."""
    three = AmqpBroker(amqp_url, Topology(exchange, queue_replicas=3), publish_timeout=5.0)
    default = AmqpBroker(amqp_url, Topology(exchange), publish_timeout=5.0)
    try:
        await three.publish(TASK, b"{}", task_id="t-1")  # a 1-node cluster: 1 member
        with pytest.raises(QueueMismatch, match=REPLICAS_ARGUMENT):
            await default.publish(TASK, b"{}", task_id="t-2")
    finally:
        await three.destroy([TASK.task])
        await three.close()
        await default.close()
