"""What every status store promises about reading many records at once
(``StatusStore.get_many``, what ``taskq bench`` polls a drain with): the records in the
order asked, ``None`` where there is none, expired ones left out."""

from __future__ import annotations

import asyncio

from taskq.status import TaskState
from tests.contract.test_store_contract import MakeStore, make_store, store, task_id

__all__ = ["make_store", "store", "task_id"]  # fixtures, imported for pytest


async def test_get_many_answers_in_the_order_asked_with_none_for_unknown_ids(
    make_store: MakeStore, task_id: str
) -> None:
    store = await make_store()
    ids = [f"{task_id}-{i}" for i in range(5)]
    for i, one in enumerate(ids):
        if i != 2:
            await store.create(one, f"t{i}")
    await store.transition(ids[4], "t4", TaskState.STARTED)
    asked = [ids[4], "missing", ids[0], ids[2], ids[0]]
    records = await store.get_many(asked)
    assert [None if r is None else (r.id, r.name, r.state) for r in records] == [
        (ids[4], "t4", TaskState.STARTED),
        None,
        (ids[0], "t0", TaskState.QUEUED),
        None,
        (ids[0], "t0", TaskState.QUEUED),
    ]
    assert records[2] == await store.get(ids[0])
    assert await store.get_many([]) == []


async def test_get_many_leaves_out_expired_records(make_store: MakeStore, task_id: str) -> None:
    store = await make_store(ttl=0.1)
    await store.create(task_id, "t")
    await asyncio.sleep(0.2)
    assert await store.get_many([task_id]) == [None]
