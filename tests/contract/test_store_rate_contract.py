"""What every status store promises about rate limit schedules (``take_start``), on
MemoryStore and RedisStore alike (fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio
import uuid
from itertools import pairwise

import pytest
import redis.asyncio as aioredis

from taskq.ratelimit import RateLimit
from taskq.stores.base import StatusStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys
from tests.contract.test_store_contract import make_store, store

__all__ = ["make_store", "store"]  # fixtures, imported for pytest

#: Two starts a second: slots 0.5 s apart, wide enough to measure on a loaded machine.
TWO_A_SECOND = RateLimit(2, 1.0)
SPACING = TWO_A_SECOND.spacing
#: How far a measured wait may be from the schedule: the calls' own time between them.
TOLERANCE = 0.15


@pytest.fixture
def key() -> str:
    return f"rate.{uuid.uuid4().hex[:8]}"


async def test_the_first_start_of_a_task_is_granted_at_once(store: StatusStore, key: str) -> None:
    assert await store.take_start(key, TWO_A_SECOND) == 0.0


async def test_a_start_too_soon_after_another_is_refused_and_reserves_no_slot(
    store: StatusStore, key: str
) -> None:
    await store.take_start(key, TWO_A_SECOND)
    refused = await store.take_start(key, TWO_A_SECOND)  # max_wait 0: now or never
    assert -SPACING <= refused < -SPACING + TOLERANCE  # the next slot is one spacing away
    reserved = await store.take_start(key, TWO_A_SECOND, max_wait=1.0)
    assert SPACING - TOLERANCE < reserved <= SPACING  # and the refusal had not taken it


async def test_refused_calls_are_told_to_come_back_one_spacing_apart_in_line(
    store: StatusStore, key: str
) -> None:
    await store.take_start(key, TWO_A_SECOND)
    backs = [-(await store.take_start(key, TWO_A_SECOND)) for _ in range(4)]
    for n, back in enumerate(backs, start=1):
        assert n * SPACING - TOLERANCE < back <= n * SPACING, backs


async def test_a_line_of_calls_that_never_came_back_delays_nobody_once_slots_are_free(
    store: StatusStore, key: str
) -> None:
    await store.take_start(key, TWO_A_SECOND)
    for _ in range(6):  # a line 3 s long
        await store.take_start(key, TWO_A_SECOND)
    await asyncio.sleep(SPACING + 0.05)
    assert await store.take_start(key, TWO_A_SECOND) == 0.0


async def test_starts_within_max_wait_are_reserved_one_spacing_apart(
    store: StatusStore, key: str
) -> None:
    waits = [await store.take_start(key, TWO_A_SECOND, max_wait=10.0) for _ in range(4)]
    assert waits[0] == 0.0
    for n, wait in enumerate(waits[1:], start=1):
        assert n * SPACING - TOLERANCE < wait <= n * SPACING


async def test_a_refusal_says_how_far_away_the_next_free_slot_is(
    store: StatusStore, key: str
) -> None:
    for _ in range(3):  # slots now, +0.5 s and +1 s taken
        await store.take_start(key, TWO_A_SECOND, max_wait=10.0)
    refused = await store.take_start(key, TWO_A_SECOND, max_wait=SPACING)
    assert -3 * SPACING <= refused < -3 * SPACING + TOLERANCE


async def test_idle_time_is_not_saved_up_for_a_burst(store: StatusStore, key: str) -> None:
    await store.take_start(key, TWO_A_SECOND)
    await asyncio.sleep(SPACING * 3)
    assert await store.take_start(key, TWO_A_SECOND) == 0.0
    assert await store.take_start(key, TWO_A_SECOND) < 0  # no credit for the idle time


async def test_each_task_has_a_schedule_of_its_own(store: StatusStore, key: str) -> None:
    assert await store.take_start(key, TWO_A_SECOND) == 0.0
    assert await store.take_start(key + ".other", TWO_A_SECOND) == 0.0
    assert await store.take_start(key, TWO_A_SECOND) < 0


async def test_concurrent_takes_never_share_a_slot(store: StatusStore, key: str) -> None:
    # Slots 0.25 s apart: 20 calls at once take longer than 50 ms on a loaded machine,
    # and a later one would then rightly find the next slot free.
    limit = RateLimit(4, 1.0)
    # Twenty connections opened first: opening one through Sentinel (the sentinels
    # asked, then the master) spreads the takes below on a busy host.
    await asyncio.gather(*(store.get(f"{key}.warm-{n}") for n in range(20)))
    now_or_never = await asyncio.gather(*(store.take_start(key, limit) for _ in range(20)))
    assert max(now_or_never) == 0.0
    assert sum(1 for wait in now_or_never if wait >= 0) == 1
    ahead = await asyncio.gather(
        *(store.take_start(key + ".ahead", limit, max_wait=10.0) for _ in range(20))
    )
    slots = sorted(ahead)
    gaps = [later - earlier for earlier, later in pairwise(slots)]
    assert all(gap > limit.spacing * 0.9 for gap in gaps), gaps


# -- Redis only ------------------------------------------------------------------------


async def test_redis_keeps_one_schedule_for_every_client_under_its_documented_key(
    redis_url: str, store_prefix: str, key: str
) -> None:
    first, second = (
        RedisStore(redis_url, prefix=store_prefix),
        RedisStore(redis_url, prefix=store_prefix),
    )
    client = aioredis.from_url(redis_url)
    try:
        await first.connect()
        await second.connect()
        assert await first.take_start(key, TWO_A_SECOND) == 0.0
        assert await second.take_start(key, TWO_A_SECOND) < 0  # another process, same schedule

        redis_key = f"{store_prefix}:rate:{key}"
        assert first.rate_key(key) == redis_key
        assert set(await client.hkeys(redis_key)) == {b"next", b"line"}
        # The refusal put a call in line, to come back one spacing after the next slot.
        assert 0 < await client.pttl(redis_key) <= 2 * SPACING * 1000 + 1
        await asyncio.sleep(2 * SPACING + 0.05)
        assert await client.exists(redis_key) == 0  # gone once both times have passed
    finally:
        await first.close()
        await second.close()
        await client.aclose()
        await delete_redis_keys(redis_url, store_prefix)
