"""Commands packed by hiredis are byte for byte what redis-py packs itself."""

from __future__ import annotations

import pytest
from redis.asyncio import Connection

from taskq.stores.redis import RedisStore
from taskq.stores.redis_packing import _HiredisPacking, use_hiredis_packing
from tests.conftest import delete_redis_keys


class _Packing(_HiredisPacking, Connection):
    pass


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "a" * 40, 2, "taskq:task:1", "taskq:recent", "succeeded", "", "é✓"),
        ("CLIENT SETNAME", "taskq"),
        (b"CONFIG GET", b"maxmemory"),
        ("SET", b"k", bytearray(b"v"), memoryview(b"w"), 1.5, 10**18),
    ],
)
def test_hiredis_packs_as_redis_py_does(args: tuple[object, ...]) -> None:
    assert b"".join(_Packing().pack_command(*args)) == b"".join(Connection().pack_command(*args))


async def test_the_store_packs_with_hiredis_and_works(redis_url: str, store_prefix: str) -> None:
    store = RedisStore(redis_url, prefix=store_prefix)
    await store.connect()
    try:
        pool = store._connection.client.connection_pool
        assert issubclass(pool.connection_class, _HiredisPacking)
        use_hiredis_packing(pool)  # twice: no second layer
        assert pool.connection_class.__mro__.count(_HiredisPacking) == 1
        assert await store.create("t-1", "add") is True
        record = await store.get("t-1")
        assert record is not None and record.state == "queued"
    finally:
        await store.close()
        await delete_redis_keys(redis_url, store_prefix)
