"""What every status store promises, run against MemoryStore and RedisStore alike.

The moves tested here are derived from :data:`taskq.status.TRANSITIONS`, not copied
from it, so a change to the table is tested the day it is made. The fixtures
(``make_store``, ``store``, ``task_id``) are in ``conftest.py``; the suite is split by
concern: creating records and the transition table here, discard and reset
(``test_store_reset_contract``), wait (``test_store_wait_contract``), recent
(``test_store_recent_contract``), batches (``test_store_batch_contract``), ttl and
life cycle (``test_store_lifecycle_contract``).
"""

from __future__ import annotations

import asyncio
import traceback
from datetime import timedelta
from typing import Any

import pytest

from taskq.errors import SerializationError
from taskq.status import ErrorInfo, TaskState
from taskq.stores.base import StatusStore

# Imported from here by other tests (their fixtures and helpers, before the split).
from tests.contract.conftest import make_store as make_store
from tests.contract.conftest import store as store
from tests.contract.conftest import task_id as task_id
from tests.contract.store_helpers import ALLOWED, FAILED, REFUSED, STARTED, SUCCEEDED, name, reach
from tests.contract.store_helpers import MakeStore as MakeStore

# -- create ---------------------------------------------------------------------------


async def test_create_writes_a_queued_record_once(store: StatusStore, task_id: str) -> None:
    assert await store.create(task_id, "add") is True
    assert await store.create(task_id, "other") is False
    status = await store.get(task_id)
    assert status is not None
    assert (status.id, status.name, status.state, status.attempts) == (task_id, "add", "queued", 0)
    assert status.created_at is not None
    assert (status.started_at, status.finished_at, status.result, status.error) == (None,) * 4


async def test_of_twenty_concurrent_creates_of_one_id_exactly_one_wins(
    store: StatusStore, task_id: str
) -> None:
    wins = await asyncio.gather(*(store.create(task_id, "add") for _ in range(20)))
    assert wins.count(True) == 1


async def test_create_never_overwrites_a_record_a_worker_already_wrote(
    store: StatusStore, task_id: str
) -> None:
    started = await store.transition(task_id, "add", STARTED)
    assert await store.create(task_id, "add") is False
    assert await store.get(task_id) == started


async def test_get_of_an_unknown_id_is_none(store: StatusStore, task_id: str) -> None:
    assert await store.get(task_id) is None


# -- the happy path -------------------------------------------------------------------


async def test_a_task_goes_from_queued_through_started_to_succeeded(
    store: StatusStore, task_id: str
) -> None:
    assert await store.create(task_id, "add")
    queued = await store.get(task_id)
    assert queued is not None and queued.created_at is not None

    started = await store.transition(task_id, "add", STARTED)
    assert started is not None and started.started_at is not None
    assert (started.state, started.attempts, started.finished_at) == (STARTED, 1, None)
    assert started.created_at == queued.created_at

    done = await store.transition(task_id, "add", SUCCEEDED, result={"sum": 3})
    assert done is not None and done.finished_at is not None
    assert (done.state, done.attempts, done.result, done.error) == (SUCCEEDED, 1, {"sum": 3}, None)
    assert (done.created_at, done.started_at) == (queued.created_at, started.started_at)
    assert queued.created_at <= started.started_at <= done.finished_at
    assert done.finished_at.utcoffset() == timedelta(0)
    assert await store.get(task_id) == done


RESULTS = {
    "nested": {"a": [1, {"b": None, "c": [True, False]}], "d": {"e": {"f": "g"}}},
    "unicode": 'héllo wörld ☃ 🎉 中文 "quoted" \\ \n\t \x00',
    "big ints": [2**80, -(2**70), 2**64 + 1, 9007199254740993],
    "floats": [0.1, 1.0, -2.5, 1e-300, 1.7976931348623157e308, 5e-324],
    "empty list": [],
    "empty dict": {},
    "empty string": "",
    "null": None,
    "zero": 0,
}


@pytest.mark.parametrize("value", RESULTS.values(), ids=RESULTS.keys())
async def test_a_result_comes_back_exactly_as_it_was_stored(
    store: StatusStore, task_id: str, value: Any
) -> None:
    await store.transition(task_id, "t", STARTED)
    written = await store.transition(task_id, "t", SUCCEEDED, result=value)
    read = await store.get(task_id)
    assert written is not None and read is not None
    for got in (written.result, read.result):
        assert got == value
        assert repr(got) == repr(value)  # 1.0 stays a float, 2**80 an exact int


async def test_a_result_comes_back_as_json_gives_it_back(store: StatusStore, task_id: str) -> None:
    await store.transition(task_id, "t", STARTED)
    await store.transition(task_id, "t", SUCCEEDED, result={"pair": (1, 2), 3: "three"})
    read = await store.get(task_id)
    assert read is not None and read.result == {"pair": [1, 2], "3": "three"}


async def test_a_result_read_back_is_a_copy_the_caller_cannot_change_the_record_through(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    written = await store.transition(task_id, "t", SUCCEEDED, result={"items": [1]})
    assert written is not None
    written.result["items"].append(2)
    read = await store.get(task_id)
    assert read is not None
    read.result["items"].append(3)
    assert (await store.get(task_id)) == written.model_copy(update={"result": {"items": [1]}})


async def test_a_result_that_is_not_json_is_refused_and_leaves_the_record_unchanged(
    store: StatusStore, task_id: str
) -> None:
    started = await store.transition(task_id, "t", STARTED)
    with pytest.raises(SerializationError):
        await store.transition(task_id, "t", SUCCEEDED, result=object())
    assert await store.get(task_id) == started


# -- the transition table -------------------------------------------------------------


@pytest.mark.parametrize(("current", "to"), ALLOWED, ids=[name(*pair) for pair in ALLOWED])
async def test_every_move_in_the_table_is_made(
    store: StatusStore, task_id: str, current: TaskState | None, to: TaskState
) -> None:
    await reach(store, task_id, current)
    moved = await store.transition(task_id, "t", to)
    assert moved is not None and moved.state is to
    assert moved.finished_at is not None if to.finished else moved.finished_at is None
    assert await store.get(task_id) == moved


@pytest.mark.parametrize(("current", "to"), REFUSED, ids=[name(*pair) for pair in REFUSED])
async def test_every_move_not_in_the_table_is_refused_and_changes_nothing(
    store: StatusStore, task_id: str, current: TaskState | None, to: TaskState
) -> None:
    before = await reach(store, task_id, current)
    error = ErrorInfo(type="Late", message="a late writer")
    assert await store.transition(task_id, "t", to, result="late", error=error) is None
    assert await store.get(task_id) == before


async def test_a_redelivered_task_starts_again_and_counts_the_attempt(
    store: StatusStore, task_id: str
) -> None:
    first = await store.transition(task_id, "t", STARTED)
    second = await store.transition(task_id, "t", STARTED)
    assert first is not None and second is not None
    assert (first.attempts, second.attempts) == (1, 2)
    assert first.started_at is not None and second.started_at is not None
    assert second.started_at >= first.started_at


async def test_of_twenty_concurrent_successes_exactly_one_is_written(
    store: StatusStore, task_id: str
) -> None:
    await store.transition(task_id, "t", STARTED)
    outcomes = await asyncio.gather(
        *(store.transition(task_id, "t", SUCCEEDED, result=i) for i in range(20))
    )
    written = [status for status in outcomes if status is not None]
    assert len(written) == 1
    assert await store.get(task_id) == written[0]


async def test_a_worker_may_record_a_start_the_publisher_never_recorded(
    store: StatusStore, task_id: str
) -> None:
    status = await store.transition(task_id, "add", STARTED)
    assert status is not None
    assert (status.name, status.state, status.attempts) == ("add", STARTED, 1)
    assert status.created_at is not None and status.started_at is not None


async def test_a_worker_may_record_a_failure_the_publisher_never_recorded(
    store: StatusStore, task_id: str
) -> None:
    error = ErrorInfo(type="MalformedMessage", message="no such task")
    status = await store.transition(task_id, "add", FAILED, error=error)
    assert status is not None
    assert (status.state, status.attempts, status.error) == (FAILED, 0, error)
    assert status.created_at is not None and status.finished_at is not None


async def test_a_failure_keeps_the_error_with_its_traceback(
    store: StatusStore, task_id: str
) -> None:
    try:
        raise ValueError("dïvision by zéro")
    except ValueError as exc:
        error = ErrorInfo.from_exception(exc, traceback=traceback.format_exc())
    await store.transition(task_id, "div", STARTED)
    await store.transition(task_id, "div", FAILED, error=error)
    status = await store.get(task_id)
    assert status is not None and status.error == error
    assert status.error.traceback is not None and "dïvision" in status.error.traceback


async def test_a_retry_keeps_the_error_until_a_later_attempt_succeeds(
    store: StatusStore, task_id: str
) -> None:
    error = ErrorInfo(type="TimeoutError", message="slow")
    await store.transition(task_id, "t", STARTED)
    retrying = await store.transition(task_id, "t", TaskState.RETRYING, error=error)
    again = await store.transition(task_id, "t", STARTED)
    done = await store.transition(task_id, "t", SUCCEEDED, result=1)
    assert retrying is not None and again is not None and done is not None
    assert (retrying.error, again.error, again.attempts) == (error, error, 2)
    assert (done.error, done.result) == (None, 1)
