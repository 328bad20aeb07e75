"""What every status store promises about listing and counting records by filter
(the dashboard's task pages and bulk actions), on MemoryStore and RedisStore alike
(fixtures shared with ``test_store_contract``)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from taskq.status import ErrorInfo, TaskState, utcnow
from taskq.stores.base import StatusStore
from taskq.stores.listing_base import TaskFilter
from tests.contract.test_store_contract import make_store, store

__all__ = ["make_store", "store"]  # fixtures, imported for pytest

BOOM = ErrorInfo(type="SMTPError", message="down")


async def given_tasks(store: StatusStore) -> None:
    """Three emails.send (one failed, one succeeded, one queued), two reports.build
    (one failed), written in this order."""
    for task_id, name in [
        ("e-1", "emails.send"),
        ("e-2", "emails.send"),
        ("r-1", "reports.build"),
        ("e-3", "emails.send"),
        ("r-2", "reports.build"),
    ]:
        assert await store.create(task_id, name)
    for task_id, name in [("e-1", "emails.send"), ("e-2", "emails.send"), ("r-1", "reports.build")]:
        await store.transition(task_id, name, TaskState.STARTED)
    await store.transition("e-1", "emails.send", TaskState.FAILED, error=BOOM)
    await store.transition("e-2", "emails.send", TaskState.SUCCEEDED, result=1)
    await store.transition("r-1", "reports.build", TaskState.FAILED, error=BOOM)


async def test_counts_by_state_cover_every_state(store: StatusStore) -> None:
    await given_tasks(store)
    counts = await store.count_tasks(TaskFilter())
    assert set(counts) == set(TaskState)
    assert counts[TaskState.FAILED] == 2
    assert counts[TaskState.SUCCEEDED] == 1
    assert counts[TaskState.QUEUED] == 2
    assert counts[TaskState.CANCELLED] == 0


async def test_counts_by_name_state_and_text(store: StatusStore) -> None:
    await given_tasks(store)
    emails = await store.count_tasks(TaskFilter(name="emails.send"))
    assert (emails[TaskState.FAILED], emails[TaskState.QUEUED]) == (1, 1)
    failed = await store.count_tasks(TaskFilter(state=TaskState.FAILED))
    assert sum(failed.values()) == failed[TaskState.FAILED] == 2
    by_text = await store.count_tasks(TaskFilter(text="reports"))
    assert sum(by_text.values()) == 2
    by_id = await store.count_tasks(TaskFilter(text="e-"))
    assert sum(by_id.values()) == 3


async def test_find_lists_the_latest_written_first(store: StatusStore) -> None:
    await given_tasks(store)
    found = await store.find_tasks(TaskFilter(state=TaskState.FAILED))
    assert [s.id for s in found] == ["r-1", "e-1"]
    assert found[0].error == BOOM and found[0].attempts == 1
    everything = await store.find_tasks(TaskFilter(), limit=3)
    assert [s.id for s in everything] == ["r-1", "e-2", "e-1"]
    assert await store.find_tasks(TaskFilter(name="nothing.here")) == []
    assert await store.find_tasks(TaskFilter(), limit=0) == []


async def test_since_selects_records_by_their_latest_step(store: StatusStore) -> None:
    await given_tasks(store)
    now = utcnow()
    hour = now - timedelta(hours=1)
    hour_ago = TaskFilter(name="emails.send", state=TaskState.FAILED, since=hour)
    assert [s.id for s in await store.find_tasks(hour_ago)] == ["e-1"]
    assert (await store.count_tasks(hour_ago))[TaskState.FAILED] == 1
    later = TaskFilter(since=now + timedelta(seconds=1))
    assert await store.find_tasks(later) == []
    assert sum((await store.count_tasks(later)).values()) == 0
    await asyncio.sleep(0.01)
    cut = utcnow()
    await asyncio.sleep(0.01)
    await store.transition("e-3", "emails.send", TaskState.STARTED)
    assert [s.id for s in await store.find_tasks(TaskFilter(since=cut))] == ["e-3"]


async def test_expired_records_are_neither_listed_nor_counted(make_store) -> None:  # type: ignore[no-untyped-def]
    short = await make_store(ttl=0.05)
    await short.create("gone", "emails.send")
    await asyncio.sleep(0.2)
    assert await short.find_tasks(TaskFilter()) == []
    assert sum((await short.count_tasks(TaskFilter())).values()) == 0
