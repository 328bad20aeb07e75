"""The status store contract (see ``test_store_contract``): the recent tasks
(``taskq status --task NAME --state STATE --limit N``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from taskq.status import ErrorInfo, TaskState
from taskq.stores.base import StatusStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys
from tests.contract.store_helpers import FAILED, STARTED, SUCCEEDED, MakeStore, path_to

# -- recent (taskq status --task NAME --state STATE --limit N) -------------------------


async def fill(store: StatusStore) -> dict[str, str]:
    """Six tasks written in this order, a moment apart: label -> task id."""
    ids = {}
    for label, name, state in [
        ("add-ok", "add", SUCCEEDED),
        ("add-failed-1", "add", FAILED),
        ("div-failed", "div", FAILED),
        ("add-failed-2", "add", FAILED),
        ("add-queued", "add", TaskState.QUEUED),
        ("add-failed-3", "add", FAILED),
    ]:
        ids[label] = task_id = uuid.uuid4().hex
        for step in path_to(state):
            error = ErrorInfo(type="E", message=label) if step is not SUCCEEDED else None
            assert await store.transition(task_id, name, step, error=error) is not None
        await asyncio.sleep(0.002)  # distinct write times, whatever the clock's grain
    return ids


async def test_recent_lists_the_last_written_tasks_newest_first(store: StatusStore) -> None:
    ids = await fill(store)
    listed = await store.recent()
    assert [s.id for s in listed] == list(reversed(ids.values()))
    assert listed[0] == await store.get(ids["add-failed-3"])


async def test_recent_filters_by_name_and_state_and_stops_at_the_limit(
    store: StatusStore,
) -> None:
    ids = await fill(store)
    failed_adds = await store.recent(name="add", state=FAILED, limit=2)
    assert [s.id for s in failed_adds] == [ids["add-failed-3"], ids["add-failed-2"]]
    assert all((s.name, s.state) == ("add", FAILED) for s in failed_adds)
    assert [s.id for s in await store.recent(name="div")] == [ids["div-failed"]]
    assert [s.id for s in await store.recent(state=TaskState.QUEUED)] == [ids["add-queued"]]
    assert await store.recent(name="nothing") == []


async def test_recent_looks_past_a_page_of_the_index_that_holds_no_match(
    store: StatusStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("taskq.stores.redis._RECENT_PAGE", 2)  # Redis reads 2 at a time
    ids = await fill(store)
    assert [s.id for s in await store.recent(name="div")] == [ids["div-failed"]]
    assert len(await store.recent(limit=5)) == 5
    assert [s.id for s in await store.recent(name="add", state=FAILED, limit=3)] == [
        ids["add-failed-3"],
        ids["add-failed-2"],
        ids["add-failed-1"],
    ]


async def test_recent_orders_by_the_last_write_not_the_creation(store: StatusStore) -> None:
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    await store.create(first, "t")
    await asyncio.sleep(0.002)
    await store.create(second, "t")
    await asyncio.sleep(0.002)
    await store.transition(first, "t", STARTED)
    assert [s.id for s in await store.recent()] == [first, second]
    await asyncio.sleep(0.002)
    await store.reset(second, "t")
    assert [s.id for s in await store.recent()] == [second, first]


async def test_recent_leaves_out_discarded_and_expired_records(make_store: MakeStore) -> None:
    store = await make_store(ttl=0.2)
    old, discarded = uuid.uuid4().hex, uuid.uuid4().hex
    await store.create(old, "t")
    await store.create(discarded, "t")
    await store.discard(discarded)
    assert [s.id for s in await store.recent()] == [old]
    await asyncio.sleep(0.25)
    fresh = uuid.uuid4().hex
    await store.create(fresh, "t")
    assert [s.id for s in await store.recent()] == [fresh]


async def test_the_redis_index_drops_expired_entries_on_the_next_write(
    redis_url: str, store_prefix: str
) -> None:
    store = RedisStore(redis_url, ttl=0.1, prefix=store_prefix)
    await store.connect()
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        for _ in range(3):
            await store.create(uuid.uuid4().hex, "t")
        await asyncio.sleep(0.15)
        last = uuid.uuid4().hex
        await store.create(last, "t")
        assert await client.zrange(f"{store_prefix}:recent", 0, -1) == [last]
    finally:
        await client.aclose()
        await store.close()
        await delete_redis_keys(redis_url, store_prefix)
