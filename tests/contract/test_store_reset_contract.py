"""The status store contract (see ``test_store_contract``): discard, and reset (an
operator requeueing a dead letter)."""

from __future__ import annotations

import asyncio

import pytest

from taskq.status import ErrorInfo, TaskState
from taskq.stores.base import StatusStore
from tests.contract.store_helpers import FAILED, STARTED, SUCCEEDED, MakeStore, reach

# -- discard --------------------------------------------------------------------------


async def test_discard_deletes_a_queued_record_so_the_task_can_be_sent_again(
    store: StatusStore, task_id: str
) -> None:
    await store.create(task_id, "t")
    assert await store.discard(task_id) is True
    assert await store.get(task_id) is None
    assert await store.create(task_id, "t") is True


@pytest.mark.parametrize("state", [s for s in TaskState if s is not TaskState.QUEUED])
async def test_discard_never_deletes_a_record_that_got_further_than_queued(
    store: StatusStore, task_id: str, state: TaskState
) -> None:
    before = await reach(store, task_id, state)
    assert await store.discard(task_id) is False
    assert await store.get(task_id) == before


async def test_discard_of_an_unknown_id_deletes_nothing(store: StatusStore, task_id: str) -> None:
    assert await store.discard(task_id) is False


# -- reset (an operator requeueing a dead letter) -------------------------------------


@pytest.mark.parametrize("state", list(TaskState))
async def test_reset_puts_a_task_in_any_state_back_to_queued_with_no_attempt_or_error(
    store: StatusStore, task_id: str, state: TaskState
) -> None:
    before = await reach(store, task_id, state)
    await store.transition(task_id, "t", STARTED)  # one more attempt where still allowed
    assert before is not None

    reset = await store.reset(task_id, "t")

    assert (reset.id, reset.name, reset.state, reset.attempts) == (task_id, "t", "queued", 0)
    assert (reset.result, reset.error, reset.started_at, reset.finished_at) == (None,) * 4
    assert reset.created_at == before.created_at
    assert await store.get(task_id) == reset


async def test_a_reset_failed_task_can_start_and_succeed_again(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.transition(task_id, "t", FAILED, error=ErrorInfo(type="E", message="boom"))
    assert await store.transition(task_id, "t", STARTED) is None  # TRANSITIONS as ever

    await store.reset(task_id, "t")
    started = await store.transition(task_id, "t", STARTED)
    done = await store.transition(task_id, "t", SUCCEEDED, result=1)

    assert started is not None and started.attempts == 1
    assert done is not None and (done.state, done.result, done.error) == (SUCCEEDED, 1, None)


async def test_reset_of_an_unknown_id_creates_a_queued_record(
    store: StatusStore, task_id: str
) -> None:
    reset = await store.reset(task_id, "t")

    assert (reset.state, reset.attempts, reset.name) == (TaskState.QUEUED, 0, "t")
    assert reset.created_at is not None
    assert await store.get(task_id) == reset


async def test_reset_renews_the_ttl(make_store: MakeStore, task_id: str) -> None:
    store = await make_store(ttl=0.2)
    await store.create(task_id, "t")
    await asyncio.sleep(0.12)
    await store.reset(task_id, "t")
    await asyncio.sleep(0.12)
    assert await store.get(task_id) is not None
