"""What every status store promises about cancelling, on MemoryStore and RedisStore
alike (fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio

import pytest

from taskq.status import CANCELLABLE, ErrorInfo, TaskState
from taskq.stores.base import StatusStore, Write
from tests.contract.test_store_contract import make_store, reach, store, task_id

__all__ = ["make_store", "store", "task_id"]  # fixtures, imported for pytest

CANCELLED, STARTED = TaskState.CANCELLED, TaskState.STARTED


@pytest.mark.parametrize("state", sorted(CANCELLABLE))
async def test_cancel_of_a_waiting_task_makes_it_cancelled_and_final(
    store: StatusStore, task_id: str, state: TaskState
) -> None:
    await reach(store, task_id, state)
    cancelled = await store.cancel(task_id)
    assert cancelled is not None and cancelled.state is CANCELLED
    assert cancelled.finished and cancelled.finished_at is not None
    assert await store.get(task_id) == cancelled
    # The worker's start is refused: the one check a cancelled task costs.
    assert await store.transition(task_id, "t", STARTED) is None
    for to in TaskState:
        assert await store.transition(task_id, "t", to) is None
    assert await store.get(task_id) == cancelled


async def test_cancel_of_a_running_task_only_marks_it(store: StatusStore, task_id: str) -> None:
    started = await reach(store, task_id, STARTED)
    marked = await store.cancel(task_id)
    assert marked is not None and marked.state is STARTED and marked.cancel_requested
    assert started is not None and marked.attempts == started.attempts
    assert (await store.get(task_id)) == marked


async def test_a_redelivery_of_a_running_task_asked_to_cancel_becomes_cancelled(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.cancel(task_id)
    again = await store.transition(task_id, "t", STARTED)
    assert again is not None and again.state is CANCELLED and again.attempts == 1
    assert not again.cancel_requested


async def test_a_retry_of_a_task_asked_to_cancel_becomes_cancelled(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.cancel(task_id)
    error = ErrorInfo(type="E", message="attempt 1")
    retry = await store.transition(task_id, "t", TaskState.RETRYING, error=error)
    assert retry is not None and retry.state is CANCELLED


async def test_an_interrupted_task_is_recorded_cancelled_by_its_worker(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.cancel(task_id)
    (done,) = await store.write_many([Write(task_id, "t", CANCELLED)])
    assert done is not None and done.state is CANCELLED and not done.cancel_requested


@pytest.mark.parametrize("final", [TaskState.SUCCEEDED, TaskState.FAILED])
async def test_a_running_task_asked_to_cancel_keeps_the_outcome_it_reaches(
    store: StatusStore, task_id: str, final: TaskState
) -> None:
    """A sync task cannot be stopped: it ends as it ends, and the mark goes."""
    await store.transition(task_id, "t", STARTED)
    await store.cancel(task_id)
    error = ErrorInfo(type="E", message="x") if final is TaskState.FAILED else None
    done = await store.transition(task_id, "t", final, result=1, error=error)
    assert done is not None and done.state is final and not done.cancel_requested


@pytest.mark.parametrize("final", [TaskState.SUCCEEDED, TaskState.FAILED, CANCELLED])
async def test_cancel_of_a_finished_task_changes_nothing(
    store: StatusStore, task_id: str, final: TaskState
) -> None:
    before = await reach(store, task_id, final)
    assert await store.cancel(task_id) == before
    assert await store.get(task_id) == before


async def test_cancel_of_an_unknown_id_is_none_and_writes_nothing(
    store: StatusStore, task_id: str
) -> None:
    assert await store.cancel(task_id) is None
    assert await store.get(task_id) is None


async def test_refuse_cancel_clears_the_mark_so_the_task_runs_on_and_retries(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.cancel(task_id)
    assert await store.refuse_cancel(task_id) is True
    assert await store.refuse_cancel(task_id) is False
    current = await store.get(task_id)
    assert current is not None and current.state is STARTED and not current.cancel_requested
    error = ErrorInfo(type="E", message="x")
    retry = await store.transition(task_id, "t", TaskState.RETRYING, error=error)
    assert retry is not None and retry.state is TaskState.RETRYING


async def test_refuse_cancel_of_an_unknown_id_writes_nothing(
    store: StatusStore, task_id: str
) -> None:
    assert await store.refuse_cancel(task_id) is False
    assert await store.get(task_id) is None


async def test_a_cancel_racing_a_start_either_wins_whole(store: StatusStore) -> None:
    """Twenty tasks each cancelled while a worker starts them: every one ends either
    cancelled before its start (the start refused) or started and marked."""
    ids = [f"race-{n}" for n in range(20)]
    for task in ids:
        assert await store.create(task, "t")
    starts = [store.transition(task, "t", STARTED) for task in ids]
    cancels = [store.cancel(task) for task in ids]
    results = await asyncio.gather(*[c for pair in zip(starts, cancels, strict=True) for c in pair])
    for task, started in zip(ids, results[::2], strict=True):
        final = await store.get(task)
        assert final is not None
        if started is None:
            assert final.state is CANCELLED
        else:
            assert final.state is STARTED and final.cancel_requested, task


async def test_a_cancelled_task_is_listed_by_its_state(store: StatusStore, task_id: str) -> None:
    await store.create(task_id, "t")
    await store.cancel(task_id)
    listed = await store.recent(state=CANCELLED)
    assert [status.id for status in listed] == [task_id]
