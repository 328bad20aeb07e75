"""Where the tests find their services, and names that keep tests apart.

Broker: ``TASKQ_TEST_AMQP_URL``, else a Docker engine through testcontainers, else
127.0.0.1:5672. Redis likewise (``TASKQ_TEST_REDIS_URL``, testcontainers, 127.0.0.1:6379).
With none, tests that need the service skip with the reason, unless
``TASKQ_REQUIRE_BROKER=1`` (CI) makes that a failure.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from typing import Any
from urllib.parse import urlsplit

import pytest

REQUIRED = os.environ.get("TASKQ_REQUIRE_BROKER") == "1"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _docker_available() -> bool:
    """A Docker engine to start containers in; probed only where one could be, so a
    machine without Docker leaves no socket behind (warnings are errors here)."""
    host = os.environ.get("DOCKER_HOST", "")
    if not host and not os.path.exists("/var/run/docker.sock"):
        return False
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.from_env(timeout=2)
        try:
            client.ping()
        finally:
            client.close()
        return True
    except Exception:
        return False


def _unavailable(service: str, tried: str) -> None:
    reason = f"no {service} available (tried {tried})"
    if REQUIRED:
        pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def _containers() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _find_service(
    stack: ExitStack,
    *,
    service: str,
    env: str,
    port: int,
    start_container: Callable[[ExitStack], str],
    local_url: str,
) -> str:
    """The environment variable's URL, else a container, else the local default."""
    url = os.environ.get(env)
    if url:
        parts = urlsplit(url)
        if not _port_open(parts.hostname or "127.0.0.1", parts.port or port):
            _unavailable(service, f"{env}={parts.hostname}:{parts.port}")
        return url
    if _docker_available():
        return start_container(stack)
    if _port_open("127.0.0.1", port):
        return local_url
    _unavailable(service, f"{env}, Docker, 127.0.0.1:{port}")
    raise AssertionError("unreachable")


def _rabbitmq_container(stack: ExitStack) -> str:
    from testcontainers.rabbitmq import RabbitMqContainer

    container = stack.enter_context(RabbitMqContainer("rabbitmq:3.10-management"))
    host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
    return f"amqp://guest:guest@{host}:{port}/"


def _redis_container(stack: ExitStack) -> str:
    from testcontainers.redis import RedisContainer

    container = stack.enter_context(RedisContainer("redis:7"))
    host, port = container.get_container_host_ip(), container.get_exposed_port(6379)
    return f"redis://{host}:{port}/0"


@pytest.fixture(scope="session")
def amqp_url(_containers: ExitStack) -> str:
    return _find_service(
        _containers,
        service="RabbitMQ",
        env="TASKQ_TEST_AMQP_URL",
        port=5672,
        start_container=_rabbitmq_container,
        local_url="amqp://guest:guest@127.0.0.1:5672/",
    )


@pytest.fixture(scope="session")
def redis_url(_containers: ExitStack) -> str:
    return _find_service(
        _containers,
        service="Redis",
        env="TASKQ_TEST_REDIS_URL",
        port=6379,
        start_container=_redis_container,
        local_url="redis://127.0.0.1:6379/0",
    )


@pytest.fixture(scope="session")
def pg_url() -> str:
    """PostgreSQL: ``TASKQ_TEST_PG_URL``, else 127.0.0.1:5432, database ``test``."""
    url = os.environ.get("TASKQ_TEST_PG_URL") or "postgresql://postgres@127.0.0.1:5432/test"
    parts = urlsplit(url)
    if not _port_open(parts.hostname or "127.0.0.1", parts.port or 5432):
        _unavailable("PostgreSQL", f"TASKQ_TEST_PG_URL={parts.hostname}:{parts.port or 5432}")
    return url


async def drop_pg_schema(pg_url: str, schema: str) -> None:
    """Drop a test's PostgreSQL schema and everything in it."""
    import asyncpg

    from taskq.stores.postgres_schema import quote

    conn = await asyncpg.connect(pg_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def sentinel_group() -> Iterator[Any]:
    """A private Redis Sentinel group (a primary, a replica, three sentinels:
    ``tests/faults/sentinel.py``) for the session; a test that kills its master leaves
    it healthy again (the old primary back as a replica)."""
    import shutil

    from tests.faults.sentinel import SentinelGroup

    if shutil.which("redis-server") is None:
        if REQUIRED:
            pytest.fail("redis-server is not installed and TASKQ_REQUIRE_BROKER=1")
        pytest.skip("redis-server is not installed: the Sentinel tests run their own")
    # TASKQ_SENTINEL_REPLICAS=2: the failover figures with a replica to spare.
    with SentinelGroup(replicas=int(os.environ.get("TASKQ_SENTINEL_REPLICAS", "1"))) as group:
        yield group


@pytest.fixture
def exchange() -> str:
    """An exchange name of this test's own: every queue it declares is named after it."""
    return f"taskq-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def store_prefix() -> str:
    """A Redis key prefix of this test's own."""
    return f"taskq-test-{uuid.uuid4().hex[:10]}"


# -- apps on either backend -------------------------------------------------------------

import pytest_asyncio  # noqa: E402

from taskq import TaskQueue  # noqa: E402


async def delete_redis_keys(redis_url: str, prefix: str) -> None:
    """Every key of the app named ``prefix`` (what ``taskq bench`` cleans up after it)."""
    from taskq.bench.cleanup import delete_keys

    await delete_keys(redis_url, prefix)


async def remove_app(app: TaskQueue, tasks: Iterable[str], redis_url: str | None) -> None:
    """Delete what ``app`` left: its tasks' queues, dead letters and exchanges, then
    (on Redis) its status records; closes it."""
    try:
        await app.broker.destroy(tasks)
    finally:
        await app.close()
        if redis_url is not None:
            await delete_redis_keys(redis_url, app.topology.exchange)


@pytest.fixture(params=["memory", "rabbitmq"])
def backend(request: pytest.FixtureRequest) -> str:
    """Runs a test on the embedded broker and store, then on RabbitMQ and Redis."""
    return str(request.param)


@pytest_asyncio.fixture
async def app(backend: str, exchange: str, request: pytest.FixtureRequest) -> Any:
    """A connected app of this test's own on ``backend``; its tasks' queues, its dead
    letters and its status records are deleted afterwards. Tasks sent by name that are
    not registered go in ``app.extra_task_names`` so their queues are deleted too."""
    if backend == "memory":
        application = TaskQueue(broker="memory://", store="memory://", exchange=exchange)
    else:
        amqp = request.getfixturevalue("amqp_url")
        redis = request.getfixturevalue("redis_url")
        application = TaskQueue(broker=amqp, store=redis, exchange=exchange, publish_timeout=10)
    application.extra_task_names = []  # type: ignore[attr-defined]
    await application.connect()
    try:
        yield application
    finally:
        names = [*application.tasks, *application.extra_task_names]  # type: ignore[attr-defined]
        redis = None if backend == "memory" else request.getfixturevalue("redis_url")
        await remove_app(application, names, redis)
