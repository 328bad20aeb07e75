"""The status store contract (see ``test_store_contract``): writes in batches."""

from __future__ import annotations

import uuid

import pytest

from taskq.errors import SerializationError
from taskq.status import ErrorInfo
from taskq.stores.base import StatusStore, Write
from tests.contract.store_helpers import FAILED, STARTED, SUCCEEDED

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


async def test_move_many_answers_each_moves_state_and_attempts_or_none_if_refused(
    store: StatusStore,
) -> None:
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    await store.create(a, "add")
    await store.transition(b, "add", STARTED)
    await store.transition(c, "add", STARTED)
    await store.transition(c, "add", SUCCEEDED, result=1)
    moved = await store.move_many(
        [Write(a, "add", STARTED), Write(b, "add", STARTED), Write(c, "add", STARTED)]
    )
    assert [(m.state, m.attempts) if m else None for m in moved] == [
        ("started", 1),
        ("started", 2),  # a redelivery: a new attempt
        None,  # finished: refused, nothing written
    ]
    moved = await store.move_many([Write(a, "add", SUCCEEDED, result=2)])
    assert [(m.state, m.attempts) if m else None for m in moved] == [("succeeded", 1)]
    record = await store.get(a)
    assert record is not None and record.result == 2 and record.finished_at is not None
