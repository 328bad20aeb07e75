"""What every status store promises, run against MemoryStore and RedisStore alike.

The moves tested here are derived from :data:`taskq.status.TRANSITIONS`, not copied
from it, so a change to the table is tested the day it is made.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from taskq.errors import SerializationError, StoreError
from taskq.status import TRANSITIONS, ErrorInfo, TaskState, TaskStatus
from taskq.stores.base import DEFAULT_TTL, StatusStore, Write
from taskq.stores.memory import MemoryStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys

MakeStore = Callable[..., Awaitable[StatusStore]]

STARTED, SUCCEEDED, FAILED = TaskState.STARTED, TaskState.SUCCEEDED, TaskState.FAILED


@pytest_asyncio.fixture(params=["memory", "redis"])
async def make_store(request: pytest.FixtureRequest) -> AsyncIterator[MakeStore]:
    """Builds connected stores of one kind; closes them and deletes their keys after."""
    built: list[StatusStore] = []
    redis_url = prefix = ""
    if request.param == "redis":
        redis_url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("store_prefix")

    async def make(*, ttl: float | None = DEFAULT_TTL) -> StatusStore:
        store: StatusStore = (
            MemoryStore(ttl=ttl) if not redis_url else RedisStore(redis_url, ttl=ttl, prefix=prefix)
        )
        await store.connect()
        built.append(store)
        return store

    try:
        yield make
    finally:
        for store in built:
            await store.close()
        if redis_url:
            await delete_redis_keys(redis_url, prefix)


@pytest_asyncio.fixture
async def store(make_store: MakeStore) -> StatusStore:
    return await make_store()


@pytest.fixture
def task_id() -> str:
    return uuid.uuid4().hex


def path_to(state: TaskState) -> list[TaskState]:
    """The shortest run of moves from no record to ``state``, searched in TRANSITIONS."""
    paths: dict[TaskState | None, list[TaskState]] = {None: []}
    frontier: list[TaskState | None] = [None]
    while frontier:
        reached: list[TaskState | None] = []
        for current in frontier:
            for to in sorted(TRANSITIONS[current]):
                if to not in paths:
                    paths[to] = [*paths[current], to]
                    reached.append(to)
        frontier = reached
    return paths[state]


async def reach(store: StatusStore, task_id: str, state: TaskState | None) -> TaskStatus | None:
    """Give ``task_id`` a record in ``state`` (no record for ``None``) by allowed moves."""
    status = None
    for step in [] if state is None else path_to(state):
        error = ErrorInfo(type="E", message="on the way") if step is not SUCCEEDED else None
        status = await store.transition(task_id, "t", step, result=[step.value], error=error)
        assert status is not None, f"the path to {state} is refused at {step}"
    return status


def name(current: TaskState | None, to: TaskState) -> str:
    return f"{current or 'absent'}->{to}"


ALLOWED = [(current, to) for current, targets in TRANSITIONS.items() for to in sorted(targets)]
REFUSED = [
    (current, to)
    for current, targets in TRANSITIONS.items()
    for to in TaskState
    if to not in targets
]


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


# -- ttl ------------------------------------------------------------------------------


async def test_a_record_expires_ttl_seconds_after_its_last_write(
    make_store: MakeStore, task_id: str
) -> None:
    store = await make_store(ttl=0.2)
    await store.create(task_id, "t")
    await asyncio.sleep(0.12)
    await store.transition(task_id, "t", STARTED)
    await asyncio.sleep(0.12)
    assert await store.get(task_id) is not None, "the write should have renewed the ttl"
    await asyncio.sleep(0.25)
    assert await store.get(task_id) is None
    assert await store.create(task_id, "t") is True


async def test_records_live_on_without_a_ttl(make_store: MakeStore, task_id: str) -> None:
    store = await make_store(ttl=None)
    await store.create(task_id, "t")
    await asyncio.sleep(0.1)
    assert await store.get(task_id) is not None


# -- life cycle -----------------------------------------------------------------------


# -- batches ---------------------------------------------------------------------------


async def test_create_many_writes_each_new_record_and_says_which_were_known(
    store: StatusStore,
) -> None:
    ids = [str(uuid.uuid4()) for _ in range(5)]
    await store.transition(ids[1], "add", STARTED)
    await store.create(ids[3], "add")
    written = await store.create_many([(task_id, "add") for task_id in ids])
    assert written == [True, False, True, False, True]
    states = [(await store.get(task_id)) for task_id in ids]
    assert [s.state if s else None for s in states] == [
        "queued",
        "started",
        "queued",
        "queued",
        "queued",
    ]


async def test_write_many_makes_each_write_as_a_single_one_would_in_order(
    store: StatusStore,
) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    await store.create(b, "add")
    await store.transition(c, "add", STARTED)
    await store.transition(c, "add", SUCCEEDED, result=7)
    error = ErrorInfo(type="ValueError", message="no")
    written = await store.write_many(
        [
            Write(a, "add", STARTED),
            Write(a, "add", SUCCEEDED, result={"x": [1, 2]}),
            Write(b, "add", FAILED, error=error),
            Write(c, "add", STARTED),  # refused: c is finished
        ]
    )
    assert [w.state if w else None for w in written] == ["started", "succeeded", "failed", None]
    first, second, failed, _ = written
    assert first is not None and first.attempts == 1
    assert second is not None and second.result == {"x": [1, 2]} and second.finished_at
    assert failed is not None and failed.error == error
    assert await store.get(a) == second
    done = await store.get(c)
    assert done is not None and (done.state, done.attempts, done.result) == ("succeeded", 1, 7)


async def test_write_many_of_nothing_writes_nothing(store: StatusStore) -> None:
    assert await store.write_many([]) == []
    assert await store.create_many([]) == []


async def test_write_many_refuses_a_result_json_cannot_carry_before_writing_anything(
    store: StatusStore,
) -> None:
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    with pytest.raises(SerializationError):
        await store.write_many(
            [Write(a, "add", STARTED), Write(b, "add", SUCCEEDED, result=object())]
        )
    assert await store.get(a) is None


async def test_a_thousand_writes_in_one_batch(store: StatusStore) -> None:
    ids = [str(uuid.uuid4()) for _ in range(1000)]
    assert await store.create_many([(task_id, "bulk") for task_id in ids]) == [True] * 1000
    started = await store.write_many([Write(task_id, "bulk", STARTED) for task_id in ids])
    assert all(s is not None and s.attempts == 1 for s in started)


async def test_connect_and_close_may_be_called_twice(make_store: MakeStore) -> None:
    store = await make_store()
    await store.connect()
    await store.close()
    await store.close()


async def test_an_unreachable_redis_fails_at_connect_without_showing_the_password() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(StoreError) as caught:
        await store.connect()
    assert "127.0.0.1:1" in str(caught.value)
    for text in (str(caught.value), repr(caught.value), repr(store), store.display_url):
        assert "s3cret" not in text
    assert caught.value.__cause__ is not None
    await store.close()


async def test_a_redis_store_used_before_connect_says_so() -> None:
    store = RedisStore("redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(StoreError, match="connect"):
        await store.get("x")


async def test_a_redis_record_is_a_plain_hash_other_languages_can_read(
    redis_url: str, store_prefix: str, task_id: str
) -> None:
    store = RedisStore(redis_url, ttl=60, prefix=store_prefix)
    await store.connect()
    client = aioredis.from_url(redis_url, decode_responses=True)
    try:
        await store.transition(task_id, "add", STARTED)
        await store.transition(task_id, "add", SUCCEEDED, result={"sum": 2**70})
        key = f"{store_prefix}:task:{task_id}"
        fields = await client.hgetall(key)
        assert 0 < await client.pttl(key) <= 60_000
    finally:
        await client.aclose()
        await store.close()
        await delete_redis_keys(redis_url, store_prefix)
    assert (fields["state"], fields["name"], fields["attempts"]) == ("succeeded", "add", "1")
    assert json.loads(fields["result"]) == {"sum": 2**70}
    assert {"created_at", "started_at", "finished_at"} <= fields.keys()
    assert "error" not in fields


async def test_a_memory_store_wakes_a_waiter_on_a_write_from_another_event_loop(
    task_id: str,
) -> None:
    store = MemoryStore()
    await store.transition(task_id, "t", STARTED)

    def finish_elsewhere() -> None:
        time.sleep(0.05)
        asyncio.run(store.transition(task_id, "t", SUCCEEDED, result="there"))

    writer = threading.Thread(target=finish_elsewhere)
    started = time.monotonic()
    writer.start()
    try:
        status = await store.wait(task_id, timeout=10)
    finally:
        await asyncio.to_thread(writer.join)
    assert status is not None and status.result == "there"
    assert time.monotonic() - started < 5
