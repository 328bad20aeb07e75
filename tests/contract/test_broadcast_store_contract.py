"""What every status store promises about broadcast calls' worker records, on MemoryStore
and RedisStore alike (fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio

import pytest

from taskq.errors import SerializationError
from taskq.status import ErrorInfo, TaskState
from taskq.stores.base import StatusStore
from tests.contract.test_store_contract import MakeStore, make_store, store, task_id

__all__ = ["make_store", "store", "task_id"]  # fixtures, imported for pytest

QUEUED, STARTED, RETRYING = TaskState.QUEUED, TaskState.STARTED, TaskState.RETRYING
SUCCEEDED, FAILED, CANCELLED = TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED


async def test_each_worker_keeps_its_own_record_under_the_call_id(
    store: StatusStore, task_id: str
) -> None:
    assert await store.create(task_id, "cache.clear")
    for worker in ("host-1", "host-2"):
        started = await store.worker_transition(task_id, worker, "cache.clear", STARTED)
        assert started is not None and started.state is STARTED
        assert (started.id, started.worker, started.attempts) == (task_id, worker, 1)
        assert started.started_at is not None and started.created_at is not None
    result = {"dropped": [1, 2.5, "x"], "empty": [], "none": None}
    done = await store.worker_transition(task_id, "host-1", "cache.clear", SUCCEEDED, result=result)
    assert done is not None and done.state is SUCCEEDED and done.result == result
    assert done.finished_at is not None and done.error is None
    error = ErrorInfo(type="OSError", message='disk "full" / \\ é', traceback="line 1\nline 2")
    failed = await store.worker_transition(task_id, "host-2", "cache.clear", FAILED, error=error)
    assert failed is not None and failed.error == error and failed.finished

    records = await store.worker_statuses(task_id)
    assert set(records) == {"host-1", "host-2"}
    assert records["host-1"] == done and records["host-2"] == failed
    # The call's own record is untouched: it says the call was sent.
    call = await store.get(task_id)
    assert call is not None and call.state is QUEUED and call.worker is None


async def test_a_worker_record_moves_as_a_task_record_does(
    store: StatusStore, task_id: str
) -> None:
    error = ErrorInfo(type="E", message="attempt 1")
    assert await store.worker_transition(task_id, "w", "t", STARTED) is not None
    retrying = await store.worker_transition(task_id, "w", "t", RETRYING, error=error)
    assert retrying is not None and retrying.state is RETRYING and retrying.error == error
    again = await store.worker_transition(task_id, "w", "t", STARTED)
    assert again is not None and again.attempts == 2 and again.error == error
    assert await store.worker_transition(task_id, "w", "t", SUCCEEDED, result=7) is not None
    # Final: nothing moves it again, a duplicate's start included.
    for state in TaskState:
        assert await store.worker_transition(task_id, "w", "t", state) is None
    (kept,) = (await store.worker_statuses(task_id)).values()
    assert kept.state is SUCCEEDED and kept.result == 7 and kept.error is None


async def test_a_cancelled_call_is_never_started_by_a_worker(
    store: StatusStore, task_id: str
) -> None:
    await store.create(task_id, "t")
    await store.worker_transition(task_id, "running", "t", STARTED)
    cancelled = await store.cancel(task_id)
    assert cancelled is not None and cancelled.state is CANCELLED

    late = await store.worker_transition(task_id, "late", "t", STARTED)
    assert late is not None and late.state is CANCELLED and late.attempts == 0
    assert late.finished_at is not None
    # The running one's failed attempt is not retried; its end is its own.
    error = ErrorInfo(type="E", message="x")
    retry = await store.worker_transition(task_id, "running", "t", RETRYING, error=error)
    assert retry is not None and retry.state is CANCELLED
    records = await store.worker_statuses(task_id)
    assert {w: r.state for w, r in records.items()} == {"running": CANCELLED, "late": CANCELLED}


async def test_a_worker_that_finished_keeps_its_outcome_after_a_cancel(
    store: StatusStore, task_id: str
) -> None:
    await store.create(task_id, "t")
    await store.worker_transition(task_id, "w", "t", STARTED)
    await store.worker_transition(task_id, "w", "t", SUCCEEDED, result="ok")
    await store.cancel(task_id)
    assert await store.worker_transition(task_id, "w", "t", STARTED) is None
    assert (await store.worker_statuses(task_id))["w"].result == "ok"


async def test_concurrent_starts_of_one_worker_count_every_attempt(
    store: StatusStore, task_id: str
) -> None:
    starts = [store.worker_transition(task_id, "w", "t", STARTED) for _ in range(20)]
    written = await asyncio.gather(*starts)
    assert sorted(s.attempts for s in written if s is not None) == list(range(1, 21))


async def test_an_unknown_call_has_no_worker_records(store: StatusStore, task_id: str) -> None:
    assert await store.worker_statuses(task_id) == {}
    await store.create(task_id, "t")
    assert await store.worker_statuses(task_id) == {}


async def test_a_result_json_cannot_carry_is_refused_before_anything_is_written(
    store: StatusStore, task_id: str
) -> None:
    await store.worker_transition(task_id, "w", "t", STARTED)
    with pytest.raises(SerializationError):
        await store.worker_transition(task_id, "w", "t", SUCCEEDED, result=object())
    assert (await store.worker_statuses(task_id))["w"].state is STARTED


async def test_worker_records_expire_with_the_ttl(make_store: MakeStore, task_id: str) -> None:
    store = await make_store(ttl=0.3)
    await store.worker_transition(task_id, "w", "t", STARTED)
    assert set(await store.worker_statuses(task_id)) == {"w"}
    await asyncio.sleep(0.5)
    assert await store.worker_statuses(task_id) == {}
