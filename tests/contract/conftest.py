"""The contract suites' fixtures: a broker and status stores of every kind."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.base import Broker
from taskq.brokers.memory import MemoryBroker
from taskq.stores.base import DEFAULT_TTL, StatusStore
from taskq.stores.memory import MemoryStore
from taskq.stores.postgres import PostgresStore
from taskq.stores.postgres_schema import schema_name
from taskq.stores.redis import RedisStore
from taskq.stores.redis_sentinel import RedisSentinelStore
from taskq.topology import Topology
from tests.conftest import delete_redis_keys, drop_pg_schema
from tests.contract.broker_helpers import TASKS
from tests.contract.store_helpers import MakeStore


@pytest_asyncio.fixture(params=["memory", "amqp"])
async def broker(request: pytest.FixtureRequest, exchange: str) -> AsyncIterator[Broker]:
    topology = Topology(exchange)
    if request.param == "amqp":
        amqp_url = request.getfixturevalue("amqp_url")
        broker: Broker = AmqpBroker(amqp_url, topology, publish_timeout=5.0)
    else:
        broker = MemoryBroker(topology)
    await broker.connect()
    try:
        yield broker
    finally:
        await broker.destroy(TASKS)
        await broker.close()


@pytest_asyncio.fixture(params=["memory", "redis", "sentinel", "postgres"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Builds connected stores of one kind; closes them and deletes their keys (Redis)
    or drops their schema (PostgreSQL) after. ``sentinel``: the Redis store behind the
    session's private Sentinel group (``wait_replicas=1``, its default), whose keys go
    with the group at the end."""
    built: list[StatusStore] = []
    redis_url = sentinel_url = pg_url = prefix = ""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
    elif request.param == "sentinel":
        sentinel_url = request.getfixturevalue("sentinel_group").url
    elif request.param == "postgres":
        pg_url = request.getfixturevalue("pg_url")
    if request.param != "memory":
        prefix = request.getfixturevalue("store_prefix")

    async def make(*, ttl: float | None = DEFAULT_TTL) -> StatusStore:
        store: StatusStore
        if redis_url:
            store = RedisStore(redis_url, ttl=ttl, prefix=prefix)
        elif pg_url:
            store = PostgresStore(pg_url, ttl=ttl, prefix=prefix)
        elif sentinel_url:
            store = RedisSentinelStore(sentinel_url, ttl=ttl, prefix=prefix)
        else:
            store = MemoryStore(ttl=ttl)
        await store.connect()
        built.append(store)
        return store

    try:
        yield make
    finally:
        for store in built:
            await store.close()
        if redis_url:
            await delete_redis_keys(redis_url, prefix)
        if pg_url:
            await drop_pg_schema(pg_url, schema_name(prefix))


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> StatusStore:
    return await make_store()


@pytest.fixture
def task_id() -> str:
    return uuid.uuid4().hex
