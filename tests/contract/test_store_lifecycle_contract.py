"""The status store contract (see ``test_store_contract``): a record's ttl, and a
store's life cycle (connect, close, an unreachable Redis, the record as other
languages read it)."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
import redis.asyncio as aioredis

from taskq.errors import StoreError
from taskq.stores.memory import MemoryStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys
from tests.contract.store_helpers import STARTED, SUCCEEDED, MakeStore

# -- ttl ------------------------------------------------------------------------------


async def test_a_record_expires_ttl_seconds_after_its_last_write(
    make_store: MakeStore, task_id: str
) -> None:
    store = await make_store(ttl=0.2)
    await store.create(task_id, "t")
    await asyncio.sleep(0.12)
    await store.transition(task_id, "t", STARTED)
    await asyncio.sleep(0.12)
    assert await store.get(task_id) is not None, "the write should have renewed the ttl"
    await asyncio.sleep(0.25)
    assert await store.get(task_id) is None
    assert await store.create(task_id, "t") is True


async def test_records_live_on_without_a_ttl(make_store: MakeStore, task_id: str) -> None:
    store = await make_store(ttl=None)
    await store.create(task_id, "t")
    await asyncio.sleep(0.1)
    assert await store.get(task_id) is not None


# -- life cycle -----------------------------------------------------------------------


async def test_connect_and_close_may_be_called_twice(make_store: MakeStore) -> None:
    store = await make_store()
    await store.connect()
    await store.close()
    await store.close()


async def test_an_unreachable_redis_fails_at_connect_without_showing_the_password() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(StoreError) as caught:
        await store.connect()
    assert "127.0.0.1:1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(store), store.display_url):
        assert "s3cret" not in text
    assert caught.value.__cause__ is not None
    await store.close()


async def test_a_redis_store_used_before_connect_says_so() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(StoreError, match="connect"):
        await store.get("x")


async def test_a_redis_record_is_a_plain_hash_other_languages_can_read(
    redis_url: str, store_prefix: str, task_id: str
) -> None:
    store = RedisStore(redis_url, ttl=60, prefix=store_prefix)
    await store.connect()
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await store.transition(task_id, "add", STARTED)
        await store.transition(task_id, "add", SUCCEEDED, result={"sum": 2**70})
        key = f"{store_prefix}:task:{task_id}"
        fields = await client.hgetall(key)
        assert 0 < await client.pttl(key) <= 60_000
    finally:
        await client.aclose()
        await store.close()
        await delete_redis_keys(redis_url, store_prefix)
    assert (fields["state"], fields["name"], fields["attempts"]) == ("succeeded", "add", "1")
    assert json.loads(fields["result"]) == {"sum": 2**70}
    assert {"created_at", "started_at", "finished_at"} <= fields.keys()
    assert "error" not in fields


async def test_a_memory_store_wakes_a_waiter_on_a_write_from_another_event_loop(
    task_id: str,
) -> None:
    store = MemoryStore()
    await store.transition(task_id, "t", STARTED)

    def finish_elsewhere() -> None:
        time.sleep(0.05)
        asyncio.run(store.transition(task_id, "t", SUCCEEDED, result="there"))

    writer = threading.Thread(target=finish_elsewhere)
    started = time.monotonic()
    writer.start()
    try:
        status = await store.wait(task_id, timeout=10)
    finally:
        await asyncio.to_thread(writer.join)
    assert status is not None and status.result == "there"
    assert time.monotonic() - started < 5
