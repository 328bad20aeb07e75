"""The Redis store behind Sentinel (``redis+sentinel://``) and ``?wait_replicas=``: URL
forms, masking, the WAIT a worker's writes end with, a create whose answer was lost.
The failover itself: ``tests/faults/test_sentinel.py``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError

from taskq import TaskQueue
from taskq.errors import ConfigurationError, StoreError
from taskq.status import TaskState
from taskq.stores import store_from_url
from taskq.stores.base import Write
from taskq.stores.redis import RedisStore
from taskq.stores.redis_sentinel import RedisSentinelStore
from tests.conftest import delete_redis_keys
from tests.faults.sentinel import SentinelGroup
from tests.faults.servers import free_port

SECRET = "s3cr3t-pw"
SENTINEL_SECRET = "sentinel-pw"


def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database() -> None:
    url = f"redis+sentinel://:{SECRET}@10.0.0.1:26379,[::1]:26380,h3:26381/mymaster/2"
    store = store_from_url(url, prefix="app")
    assert isinstance(store, RedisSentinelStore)
    address = store.address
    assert address.sentinels == [("10.0.0.1", 26379), ("::1", 26380), ("h3", 26381)]
    assert (address.master, address.db, address.password) == ("mymaster", 2, SECRET)
    assert store.replicas.count == 1  # the default with Sentinel
    bare = store_from_url("redis+sentinel://h1:26379/mymaster")
    assert isinstance(bare, RedisSentinelStore)
    assert (bare.address.db, bare.address.password) == (0, None)


def test_wait_replicas_is_zero_unless_asked_and_never_reaches_redis_py() -> None:
    plain = store_from_url("redis://127.0.0.1:6379/0")
    assert isinstance(plain, RedisStore) and plain.replicas.count == 0
    asked = store_from_url("redis://127.0.0.1:6379/0?wait_replicas=2&wait_timeout=250")
    assert isinstance(asked, RedisStore)
    assert (asked.replicas.count, asked.replicas.timeout_ms) == (2, 250)
    assert asked.replicas.strip(asked._url) == "redis://127.0.0.1:6379/0"
    sentinel = store_from_url("redis+sentinel://h:26379/m?wait_replicas=0")
    assert isinstance(sentinel, RedisStore) and sentinel.replicas.count == 0


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379", "master's name"),
        ("redis+sentinel://h1:26379/m/0/extra", "master's name"),
        ("redis+sentinel://h1:26379/m/zero", "master's name"),
        ("redis+sentinel://h1,h2:26379/m", "host:port"),
        ("redis+sentinel://h1:26379/m?socket_timeout=1", "unknown option"),
        ("redis+sentinel://h1:26379/m?wait_replicas=many", "whole numbers"),
        ("redis://h1:6379/0?wait_replicas=-1", "0 or more"),
    ],
)
def test_a_malformed_sentinel_url_is_refused_with_the_form_to_use(url: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        store_from_url(url)


async def test_the_passwords_appear_in_no_repr_and_no_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Nobody listens there: the store looks for a master until its (shortened) timeout.
    monkeypatch.setattr("taskq.stores.redis_sentinel.OPERATION_TIMEOUT", 0.3)
    url = (
        f"redis+sentinel://:{SECRET}@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/m/0"
        f"?sentinel_password={SENTINEL_SECRET}"
    )
    app = TaskQueue(store=url)
    store = app.store
    assert SECRET not in repr(app) and SENTINEL_SECRET not in repr(store)
    assert "***" in store.display_url
    with pytest.raises(StoreError) as caught:
        await store.connect()
    assert SECRET not in str(caught.value) and SENTINEL_SECRET not in str(caught.value)
    assert "No master found" in str(caught.value)


async def test_a_worker_write_not_on_enough_replicas_is_a_store_error_a_create_is_not(
    redis_url: str, store_prefix: str
) -> None:
    # The test Redis has no replica: a worker's move cannot be acknowledged by one.
    store = RedisStore(f"{redis_url}?wait_replicas=1&wait_timeout=50", prefix=store_prefix)
    await store.connect()
    try:
        assert await store.create("t1", "job")  # a publisher's create does not wait
        with pytest.raises(StoreError, match="0 of 1 replicas acknowledged"):
            await store.transition("t1", "job", TaskState.STARTED)
        with pytest.raises(StoreError, match="wait_replicas"):
            await store.write_many([Write("t1", "job", TaskState.SUCCEEDED, result=1)])
        # Written all the same: a redelivery finds the outcome recorded.
        status = await store.get("t1")
        assert status is not None and status.state is TaskState.SUCCEEDED
    finally:
        await store.close()
        await delete_redis_keys(redis_url, store_prefix)


@pytest_asyncio.fixture
async def sentinel_store(sentinel_group: SentinelGroup) -> AsyncIterator[RedisSentinelStore]:
    sentinel_group.wait_healthy()  # a fault test may have killed its master before
    store = RedisSentinelStore(sentinel_group.url, prefix=f"taskq-test-{uuid.uuid4().hex[:10]}")
    await store.connect()
    try:
        yield store
    finally:
        await store.close()


async def test_moves_behind_sentinel_wait_for_the_replica_and_succeed(
    sentinel_store: RedisSentinelStore,
) -> None:
    assert await sentinel_store.create("t1", "job")
    started = await sentinel_store.transition("t1", "job", TaskState.STARTED)
    assert started is not None and started.state is TaskState.STARTED


async def test_a_create_whose_answer_was_lost_still_counts_as_written(
    sentinel_store: RedisSentinelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Carried out on the server, its answer lost with the connection (a primary killed
    between the two): retried, the create is refused, but it was this send's own, so
    the send goes on to publish instead of taking the id for one already sent."""
    real = Pipeline._execute_pipeline
    lost: list[bool] = []

    async def answer_lost_once(self: Pipeline, *args: Any, **kwargs: Any) -> Any:
        replies = await real(self, *args, **kwargs)
        if not lost:
            lost.append(True)
            raise RedisConnectionError("connection reset (test)")
        return replies

    monkeypatch.setattr(Pipeline, "_execute_pipeline", answer_lost_once)
    assert await sentinel_store.create_many([("lost-1", "job"), ("lost-2", "job")]) == [
        True,
        True,
    ]
    assert lost
    # Without a lost answer, a known id is refused as always.
    assert await sentinel_store.create_many([("lost-1", "job")]) == [False]
    # Whole records asked for (write_many): the record it wrote.
    lost.clear()
    (written,) = await sentinel_store.write_many(
        [Write("lost-3", "job", TaskState.QUEUED, only_if_absent=True)]
    )
    assert lost and written is not None and written.state is TaskState.QUEUED
