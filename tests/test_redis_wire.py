"""Script calls written straight onto a pooled connection (taskq.stores.redis_wire)."""

from __future__ import annotations

import hashlib
import uuid

import pytest
from redis.asyncio import BlockingConnectionPool
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskq.stores.redis_wire import ScriptRunner
from tests.conftest import delete_redis_keys


def _script(body: str) -> tuple[str, str]:
    # A comment unique to the test: a script the server has never cached.
    text = f"-- {uuid.uuid4().hex}\n{body}"
    return text, hashlib.sha1(text.encode()).hexdigest()


@pytest.fixture
async def pool(redis_url: str, store_prefix: str):  # type: ignore[no-untyped-def]
    pool = BlockingConnectionPool.from_url(redis_url, decode_responses=True, max_connections=2)
    yield pool
    await pool.disconnect()
    await delete_redis_keys(redis_url, store_prefix)


async def test_a_script_the_server_lacks_is_loaded_and_each_call_runs_once(
    pool: BlockingConnectionPool, store_prefix: str
) -> None:
    text, sha = _script("return redis.call('INCR', KEYS[1]) + tonumber(ARGV[1])")
    runner = ScriptRunner(pool, text, sha, timeout=5)
    keys = [f"{store_prefix}:n{i % 2}" for i in range(6)]
    replies = await runner.run([([key], [str(i * 100)]) for i, key in enumerate(keys)])
    # NOSCRIPT means "not run": every call ran exactly once, in order.
    assert replies == [1, 101, 202, 302, 403, 503]
    assert await runner.run([([keys[0]], ["0"])]) == [4]


async def test_an_error_reply_is_raised_and_the_connection_stays_in_step(
    pool: BlockingConnectionPool, store_prefix: str
) -> None:
    text, sha = _script(
        "if ARGV[1] == 'bad' then return redis.error_reply('ERR refused') end return ARGV[1]"
    )
    runner = ScriptRunner(pool, text, sha, timeout=5)
    with pytest.raises(ResponseError, match="refused"):
        await runner.run([([store_prefix], [arg]) for arg in ("a", "bad", "c")])
    # Every reply of that batch was read: the next batch gets its own.
    assert await runner.run([([store_prefix], ["d"]), ([store_prefix], ["e"])]) == ["d", "e"]


async def test_a_batch_cut_by_its_time_box_never_leaves_a_reply_for_the_next(
    pool: BlockingConnectionPool, store_prefix: str
) -> None:
    text, sha = _script("return ARGV[1]")
    await ScriptRunner(pool, text, sha, timeout=5).run([([store_prefix], ["load"])])
    hasty = ScriptRunner(pool, text, sha, timeout=1e-9)
    with pytest.raises(RedisTimeoutError):
        await hasty.run([([store_prefix], [str(i)]) for i in range(200)])
    runner = ScriptRunner(pool, text, sha, timeout=5)
    for _ in range(3):  # whichever connection the pool hands out
        assert await runner.run([([store_prefix], ["fresh"])]) == ["fresh"]
