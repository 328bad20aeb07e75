"""A task's call kept in its ``queued`` record (:mod:`taskq.call_record`), on every
store: written by the create itself, read back as ``args`` / ``kwargs``, capped, kept
by a reset, absent where no publisher recorded the task."""

from __future__ import annotations

import json
import uuid

import redis.asyncio as aioredis

from taskq.call_record import CALL_LIMIT, call_of_body
from taskq.message import TaskMessage
from taskq.status import TaskState
from taskq.stores.base import StatusStore
from taskq.stores.redis import RedisStore
from tests.conftest import delete_redis_keys
from tests.contract.test_store_contract import make_store, store

__all__ = ["make_store", "store"]  # fixtures, imported for pytest

STARTED, FAILED = TaskState.STARTED, TaskState.FAILED


def _call(args: list[object], kwargs: dict[str, object], task_id: str = "t") -> str:
    call = call_of_body(TaskMessage(task_id, "emails.send", args, kwargs).encode())
    assert call is not None
    return call


async def test_a_created_record_keeps_its_call_through_every_later_move(
    store: StatusStore,
) -> None:
    task_id = uuid.uuid4().hex
    args, kwargs = ["ada@example.com", {"n": 1}], {"subject": "héllo", "retry": None}
    assert await store.create(task_id, "emails.send", _call(args, kwargs, task_id))
    queued = await store.get(task_id)
    assert queued is not None and queued.state is TaskState.QUEUED
    assert (queued.args, queued.kwargs, queued.call_truncated) == (args, kwargs, None)
    await store.transition(task_id, "emails.send", STARTED)
    assert await store.transition(task_id, "emails.send", FAILED) is not None
    # A worker's move need not send the call back (Redis leaves it out: the worker has
    # the message); the record keeps it for whoever reads it.
    failed = await store.get(task_id)
    assert failed is not None and failed.state is TaskState.FAILED
    assert (failed.args, failed.kwargs) == (args, kwargs)


async def test_create_many_keeps_each_call_in_its_own_record(store: StatusStore) -> None:
    ids = [uuid.uuid4().hex for _ in range(3)]
    written = await store.create_many(
        [(ids[0], "a", _call([0], {})), (ids[1], "a", _call([1], {"k": 1})), (ids[2], "a")]
    )
    assert written == [True, True, True]
    records = [await store.get(task_id) for task_id in ids]
    assert [(r.args, r.kwargs) for r in records if r] == [([0], {}), ([1], {"k": 1}), (None, None)]


async def test_a_call_over_the_limit_is_kept_as_a_marker_with_its_size(
    store: StatusStore,
) -> None:
    task_id = uuid.uuid4().hex
    call = _call(["x" * CALL_LIMIT], {}, task_id)
    assert json.loads(call) == {
        "truncated": True,
        "bytes": CALL_LIMIT + len('{"args":[""],"kwargs":{}}'),
    }
    await store.create(task_id, "big", call)
    record = await store.get(task_id)
    assert record is not None
    assert (record.args, record.kwargs) == (None, None)
    assert record.call_truncated == json.loads(call)["bytes"]


async def test_a_record_no_publisher_wrote_has_no_call(store: StatusStore) -> None:
    task_id = uuid.uuid4().hex
    started = await store.transition(task_id, "from.node", STARTED)
    assert started is not None
    assert (started.args, started.kwargs, started.call_truncated) == (None, None, None)


async def test_a_create_that_lands_after_the_workers_start_fills_in_the_call_only(
    store: StatusStore,
) -> None:
    # A generated id's record is written while its message is published: a fast
    # worker's `started` may come first. The create is refused (the task has moved on)
    # but its call is kept; a second create, or one of another task, changes nothing.
    task_id = uuid.uuid4().hex
    await store.transition(task_id, "emails.send", STARTED)
    assert not await store.create(task_id, "other.task", _call([9], {}))
    assert (await store.get(task_id)).args is None  # type: ignore[union-attr]
    assert not await store.create(task_id, "emails.send", _call([1], {"a": 2}))
    assert not await store.create(task_id, "emails.send", _call([2], {}))
    record = await store.get(task_id)
    assert record is not None and record.state is STARTED and record.attempts == 1
    assert (record.args, record.kwargs) == ([1], {"a": 2})


async def test_a_reset_keeps_the_call(store: StatusStore) -> None:
    task_id = uuid.uuid4().hex
    await store.create(task_id, "emails.send", _call([1, 2], {"x": "y"}))
    await store.transition(task_id, "emails.send", FAILED)
    reset = await store.reset(task_id, "emails.send")
    assert reset.state is TaskState.QUEUED and (reset.args, reset.kwargs) == ([1, 2], {"x": "y"})


async def test_the_redis_call_is_a_plain_json_field_of_the_hash(
    redis_url: str, store_prefix: str
) -> None:
    redis_store = RedisStore(redis_url, prefix=store_prefix)
    await redis_store.connect()
    task_id = uuid.uuid4().hex
    try:
        await redis_store.create(task_id, "emails.send", _call(["a"], {"b": 1}))
        raw = aioredis.from_url(redis_url, decode_responses=True)
        try:
            field = await raw.hget(f"{store_prefix}:task:{task_id}", "call")
        finally:
            await raw.aclose()
        assert field is not None and json.loads(field) == {"args": ["a"], "kwargs": {"b": 1}}
    finally:
        await redis_store.close()
        await delete_redis_keys(redis_url, store_prefix)


def test_the_call_is_a_slice_of_the_body_equal_to_encoding_the_arguments() -> None:
    args, kwargs = ['a,"args":[1]', {"\\": '"'}], {"k": ["é", 1.5, None]}
    call = call_of_body(TaskMessage('id,"args":x', 'n"', args, kwargs).encode())
    assert call is not None and json.loads(call) == {"args": args, "kwargs": kwargs}
    assert call_of_body(b"[1,2]") is None
