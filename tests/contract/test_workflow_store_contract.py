"""What every status store promises about workflow records and group joins, on
MemoryStore and RedisStore alike (fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from taskq.status import ErrorInfo
from taskq.stores.base import StatusStore
from taskq.stores.workflow_base import WorkflowState
from tests.contract.test_store_contract import make_store, store

__all__ = ["make_store", "store"]  # fixtures, imported for pytest

SHAPE = {"type": "chain", "steps": [{"type": "task", "task": "t", "args": [1]}]}


@pytest.fixture
def wf_id() -> str:
    return f"wf-{uuid.uuid4()}"


async def test_a_workflow_record_is_created_once_and_starts_running(
    store: StatusStore, wf_id: str
) -> None:
    assert await store.get_workflow(wf_id) is None
    assert await store.create_workflow(wf_id, SHAPE)
    assert not await store.create_workflow(wf_id, {"type": "group", "members": []})
    record = await store.get_workflow(wf_id)
    assert record is not None and record.state is WorkflowState.RUNNING
    assert record.definition == SHAPE and record.created_at is not None
    light = await store.get_workflow(wf_id, definition=False)
    assert light is not None and light.definition is None and light.state is WorkflowState.RUNNING


async def test_the_first_final_state_of_a_workflow_wins(store: StatusStore, wf_id: str) -> None:
    await store.create_workflow(wf_id, SHAPE)
    error = ErrorInfo(type="ValueError", message="boom")
    assert await store.finish_workflow(
        wf_id, WorkflowState.FAILED, error=error, failed_step=f"{wf_id}.1"
    )
    assert not await store.finish_workflow(wf_id, WorkflowState.SUCCEEDED)
    assert not await store.finish_workflow(wf_id, WorkflowState.CANCELLED)
    record = await store.get_workflow(wf_id)
    assert record is not None and record.state is WorkflowState.FAILED
    assert record.error == error and record.failed_step == f"{wf_id}.1"
    assert record.finished_at is not None and record.definition == SHAPE


async def test_an_unknown_workflow_is_not_finished(store: StatusStore, wf_id: str) -> None:
    assert not await store.finish_workflow(wf_id, WorkflowState.CANCELLED)
    assert await store.get_workflow(wf_id) is None


async def test_a_group_fires_once_when_its_last_member_is_counted(
    store: StatusStore, wf_id: str
) -> None:
    assert not await store.join_member(wf_id, "1", 0, 3)
    assert not await store.join_member(wf_id, "1", 2, 3)
    assert not await store.join_member(wf_id, "1", 0, 3)  # a redelivery: counted once
    assert await store.join_member(wf_id, "1", 1, 3)  # complete: the fire is this member's
    # The member that claimed the fire gets it again (its redelivery repairs a crash
    # between the claim and the publish); every other member never does.
    assert await store.join_member(wf_id, "1", 1, 3)
    assert not await store.join_member(wf_id, "1", 0, 3)
    assert not await store.join_member(wf_id, "1", 2, 3)
    # Another group of the same workflow is counted apart.
    assert await store.join_member(wf_id, "2", 0, 1)


async def test_concurrent_members_and_their_redeliveries_fire_exactly_once(
    store: StatusStore, wf_id: str
) -> None:
    size = 50
    calls = [store.join_member(wf_id, "0", member % size, size) for member in range(3 * size)]
    answers = await asyncio.gather(*calls)
    firers = {member % size for member, fired in enumerate(answers) if fired}
    assert len(firers) == 1
