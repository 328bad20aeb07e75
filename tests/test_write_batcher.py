"""The worker's batched status writes (taskq.stores.batch), on memory and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest
import pytest_asyncio

from taskq.errors import SerializationError, StoreError
from taskq.status import TaskState, TaskStatus
from taskq.stores.base import StatusStore, Write
from taskq.stores.batch import WriteBatcher
from taskq.stores.memory import MemoryStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys

STARTED, SUCCEEDED = TaskState.STARTED, TaskState.SUCCEEDED


@pytest_asyncio.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[StatusStore]:
    if request.param == "memory":
        yield MemoryStore()
        return
    url, prefix = request.getfixturevalue("redis_url"), request.getfixturevalue("store_prefix")
    redis_store = RedisStore(url, prefix=prefix)
    await redis_store.connect()
    try:
        yield redis_store
    finally:
        await redis_store.close()
        await delete_redis_keys(url, prefix)


class Counting:
    """Counts the batches a store is asked to write, and can fail them."""

    def __init__(self, store: StatusStore) -> None:
        self.store = store
        self.batches: list[int] = []
        self.fail = False
        original = store.write_many

        async def write_many(writes: Sequence[Write]) -> list[TaskStatus | None]:
            self.batches.append(len(writes))
            if self.fail:
                raise StoreError("store away")
            return await original(writes)

        store.write_many = write_many  # type: ignore[method-assign]


async def test_writes_asked_for_together_go_in_one_batch_and_each_gets_its_answer(
    store: StatusStore,
) -> None:
    counting = Counting(store)
    batcher = WriteBatcher(store)
    ids = [str(uuid.uuid4()) for _ in range(100)]
    started = await asyncio.gather(*(batcher.transition(i, "add", STARTED) for i in ids))
    assert [s.id if s else None for s in started] == ids
    assert all(s is not None and s.attempts == 1 for s in started)
    assert counting.batches == [100]
    done = await asyncio.gather(
        *(batcher.transition(i, "add", SUCCEEDED, result=n) for n, i in enumerate(ids))
    )
    assert [s.result if s else None for s in done] == list(range(100))
    assert counting.batches == [100, 100]
    refused = await batcher.transition(ids[0], "add", STARTED)  # finished: refused
    assert refused is None
    record = await store.get(ids[0])
    assert record is not None and record.state is SUCCEEDED


async def test_writes_asked_for_during_a_flush_go_in_the_next_one(store: StatusStore) -> None:
    counting = Counting(store)
    batcher = WriteBatcher(store)
    first = asyncio.ensure_future(batcher.transition(str(uuid.uuid4()), "add", STARTED))
    await asyncio.sleep(0)  # the flush of `first` is on its way
    later = [str(uuid.uuid4()) for _ in range(10)]
    rest = await asyncio.gather(*(batcher.transition(i, "add", STARTED) for i in later))
    assert await first is not None and all(rest)
    # The first, alone, was a plain write; the ten waited for it and went as one batch.
    assert counting.batches == [10]


async def test_a_store_error_reaches_every_caller_of_its_batch_and_the_next_batch_is_fine(
    store: StatusStore,
) -> None:
    counting = Counting(store)
    batcher = WriteBatcher(store)
    counting.fail = True
    results = await asyncio.gather(
        *(batcher.transition(str(uuid.uuid4()), "add", STARTED) for _ in range(5)),
        return_exceptions=True,
    )
    assert all(isinstance(r, StoreError) for r in results)
    counting.fail = False
    assert await batcher.transition(str(uuid.uuid4()), "add", STARTED) is not None


async def test_a_result_the_store_cannot_encode_fails_only_its_own_caller(
    store: StatusStore,
) -> None:
    batcher = WriteBatcher(store)
    good, bad = str(uuid.uuid4()), str(uuid.uuid4())
    await store.transition(good, "add", STARTED)
    await store.transition(bad, "add", STARTED)
    results = await asyncio.gather(
        batcher.transition(good, "add", SUCCEEDED, result=1),
        batcher.transition(bad, "add", SUCCEEDED, result=object()),
        return_exceptions=True,
    )
    assert isinstance(results[0], TaskStatus) and results[0].result == 1
    assert isinstance(results[1], SerializationError)
    record = await store.get(bad)
    assert record is not None and record.state is STARTED
