"""The status store contract (see ``test_store_contract``): waiting for a task to
finish."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from taskq.status import ErrorInfo, TaskStatus
from taskq.stores.base import StatusStore
from tests.contract.store_helpers import FAILED, STARTED, SUCCEEDED

# -- wait -----------------------------------------------------------------------------


async def test_wait_returns_the_finished_record_once_the_task_finishes(
    store: StatusStore, task_id: str
) -> None:
    await store.create(task_id, "t")
    waiter = asyncio.create_task(store.wait(task_id, timeout=10))
    await asyncio.sleep(0.05)
    await store.transition(task_id, "t", STARTED)
    done = await store.transition(task_id, "t", SUCCEEDED, result="ok")
    assert await asyncio.wait_for(waiter, 5) == done


async def test_wait_returns_at_once_for_a_finished_task(store: StatusStore, task_id: str) -> None:
    done = await store.transition(task_id, "t", FAILED, error=ErrorInfo(type="E", message="m"))
    started = time.monotonic()
    assert await store.wait(task_id, timeout=10) == done
    assert time.monotonic() - started < 1


async def test_wait_returns_the_last_record_seen_at_timeout(
    store: StatusStore, task_id: str
) -> None:
    started = await store.transition(task_id, "t", STARTED)
    assert await store.wait(task_id, timeout=0.1) == started


async def test_wait_returns_none_at_timeout_when_there_is_no_record(
    store: StatusStore, task_id: str
) -> None:
    assert await store.wait(task_id, timeout=0.1) is None


async def test_many_concurrent_waits_each_get_their_own_record_in_few_reads(
    store: StatusStore, task_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Many ``result()`` calls gathered: a polling store reads for all of them together,
    a few reads in all (one at a time, each poll held a pooled connection of its own),
    and each wait still gets its own task's record."""
    count = 500
    ids = [f"{task_id}-{n}" for n in range(count)]

    async def finish(n: int) -> None:
        await store.transition(ids[n], "t", STARTED)
        await store.transition(ids[n], "t", SUCCEEDED, result=n)

    await asyncio.gather(*(finish(n) for n in range(count // 2)))
    reads: list[int] = []
    get_many = store.get_many

    async def counted(task_ids: Sequence[str]) -> list[TaskStatus | None]:
        reads.append(len(task_ids))
        return await get_many(task_ids)

    monkeypatch.setattr(store, "get_many", counted)
    waits = [asyncio.create_task(store.wait(each, timeout=30)) for each in ids]
    await asyncio.sleep(0.3)
    await asyncio.gather(*(finish(n) for n in range(count // 2, count)))
    statuses = await asyncio.wait_for(asyncio.gather(*waits), 30)

    assert [s.result if s is not None else None for s in statuses] == list(range(count))
    if type(store).wait is StatusStore.wait:  # it polls (the memory store is told)
        assert sum(reads) >= count and len(reads) < 100, reads
