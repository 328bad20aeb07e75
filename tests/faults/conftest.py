"""Fixtures of the fault-injection suite (``tests/faults``, marker ``faults``).

- ``rabbit_node``: a private RabbitMQ node for the whole session (``servers.RabbitNode``);
  ``node``: the same, made sure to be up at the start of each test (a scenario that
  restarts or kills it may have failed half-way);
- ``private_redis``: a redis-server of the test's own (``servers.RedisServer``);
- ``make_proxy``: :class:`~tests.faults.proxy.FaultProxy` instances, closed after the test;
- ``deployment`` / ``fleet``: a deployment on the private node (``exchange`` of its own,
  status store and run counter in the shared Redis) and its worker processes; its
  queues, exchanges and Redis keys are deleted afterwards.

The suite runs in the default ``pytest`` run (CI requires it: no skip under
``TASKQ_REQUIRE_BROKER=1``); ``pytest -m faults`` or ``pytest tests/faults`` selects it,
``-m "not faults"`` leaves it out. Its figures are printed in the terminal summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import REQUIRED, delete_redis_keys, remove_app
from tests.faults import fault_app
from tests.faults.harness import FIGURES, Deployment, Fleet
from tests.faults.proxy import FaultProxy
from tests.faults.servers import (
    RabbitNode,
    RedisServer,
    ServerError,
    port_open,
    rabbitmq_available,
    sweep_leftovers,
)

HERE = Path(__file__).resolve().parent
#: aio-pika waits 5 s before each reconnect by default; the scenarios' URLs ask for 1 s
#: so that a dozen reconnects fit in the suite's time.
FAST_RECONNECT = "reconnect_interval=1"


def with_query(url: str, query: str) -> str:
    return url + ("&" if "?" in url else "?") + query


# -- marking and reporting --------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("fault-injection figures")
        for figures in FIGURES:
            terminalreporter.write_line(figures.line())


@pytest_asyncio.fixture(autouse=True)
async def _dump_tasks_before_timeout(request: pytest.FixtureRequest) -> Any:
    """pytest-timeout shows thread stacks only, where a hung scenario is just an event
    loop waiting; 5 s before the limit, print every asyncio task's stack instead."""
    marker = request.node.get_closest_marker("timeout")
    limit = (
        float(marker.args[0])
        if marker and marker.args
        else float(request.config.getini("timeout") or 0)
    )
    if limit <= 10:
        yield
        return
    loop = asyncio.get_running_loop()

    def dump() -> None:
        print(f"--- asyncio tasks {limit - 5:.0f}s into the test ---", file=sys.stderr)
        for task in asyncio.all_tasks(loop):
            print(repr(task), file=sys.stderr)
            task.print_stack(limit=12, file=sys.stderr)

    timer = threading.Timer(limit - 5, lambda: loop.call_soon_threadsafe(dump))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


# -- private servers -----------------------------------------------------------------------


def _unavailable(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def rabbit_node() -> Iterator[RabbitNode]:
    """A RabbitMQ node of this session's own, stopped and deleted at the end."""
    if not rabbitmq_available():
        _unavailable("rabbitmq-server is not installed: the fault suite runs its own node")
    sweep_leftovers()
    node = RabbitNode()
    try:
        node.start()
    except BaseException:
        node.close()
        raise
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def node(rabbit_node: RabbitNode) -> RabbitNode:
    """The session's node, up and running (started again if a scenario left it down)."""
    try:
        if not rabbit_node.running:
            rabbit_node.start()
        elif not port_open(rabbit_node.port):
            rabbit_node.start_app()
    except ServerError as exc:
        pytest.fail(f"the private RabbitMQ node cannot be brought back: {exc}")
    return rabbit_node


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture
def make_proxy() -> Iterator[Callable[[int], FaultProxy]]:
    """``make_proxy(port)``: a started proxy to 127.0.0.1:port, closed after the test."""
    proxies: list[FaultProxy] = []

    def make(port: int) -> FaultProxy:
        proxy = FaultProxy(("127.0.0.1", port))
        proxy.start()
        proxies.append(proxy)
        return proxy

    yield make
    for proxy in proxies:
        proxy.close()


# -- a deployment and its workers --------------------------------------------------------


@pytest_asyncio.fixture
async def deployment(node: RabbitNode, redis_url: str) -> Any:
    """A deployment on the private node (workers reconnect after 1 s); store and run
    counter in the shared Redis. A test may point ``broker_url`` / ``store_url``
    elsewhere (a proxy, a private Redis) before starting workers. Everything it
    declared or wrote is deleted afterwards."""
    dep = Deployment(
        broker_url=with_query(node.amqp_url, FAST_RECONNECT),
        store_url=redis_url,
        counter_url=redis_url,
    )
    yield dep
    # Cleaned through the node directly (not through a proxy the test may have left
    # stalled); the node may have been left down by a failed scenario.
    if not node.running:
        node.start()
    elif not port_open(node.port):
        node.start_app()
    cleaner = dep.app(node.amqp_url)
    cleaner.store = _store_for(redis_url, dep.exchange)
    await remove_app(cleaner, list(fault_app.app.tasks), redis_url)
    if dep.counter_url != redis_url:
        with contextlib.suppress(Exception):
            await delete_redis_keys(dep.counter_url, dep.exchange)


def _store_for(redis_url: str, exchange: str) -> Any:
    from taskq.stores.redis import RedisStore

    return RedisStore(redis_url, prefix=exchange)


@pytest.fixture
def fleet(deployment: Deployment, tmp_path: Path) -> Iterator[Fleet]:
    workers = Fleet(deployment, tmp_path)
    try:
        yield workers
    finally:
        workers.close()
