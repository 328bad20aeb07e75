"""Bulk publishing: ``send_many`` checks every call first, records them all in one store
round trip, publishes them with their confirms pipelined, and says exactly which were
not confirmed. On the embedded broker and on RabbitMQ + Redis alike."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aio_pika
import pytest

from taskq import (
    BulkPublishError,
    ConfigurationError,
    InvalidArguments,
    MessageTooLarge,
    PublishError,
    SerializationError,
    TaskQueue,
    TaskState,
    Worker,
)
from taskq.topology import QueueSpec
from tests.helpers import eventually


async def ready(app: TaskQueue, task: str) -> int:
    info = await app.broker.queue_info(task)
    return 0 if info is None else info.ready


async def states(app: TaskQueue, ids: list[str]) -> list[TaskState | None]:
    records = [await app.handle(task_id).status() for task_id in ids]
    return [None if record is None else record.state for record in records]


async def test_handles_come_back_in_call_order_queued_and_every_call_runs(app: TaskQueue) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    calls: list[Any] = [((n, n), {}) for n in range(50)]
    calls[3] = ((3,), {"y": 3})

    handles = await add.send_many(calls)

    assert [h.name for h in handles] == [add.name] * 50
    assert len({h.id for h in handles}) == 50
    assert set(await states(app, [h.id for h in handles])) == {TaskState.QUEUED}
    assert await ready(app, add.name) == 50
    async with Worker(app, concurrency=8):
        results = [await h.result(timeout=20) for h in handles]
    assert results == [2 * n for n in range(50)]


async def test_a_bad_call_raises_naming_its_index_and_nothing_is_written_or_published(
    app: TaskQueue,
) -> None:
    @app.task
    async def needs_int(x: int) -> int:
        return x

    ids = [f"id-{uuid.uuid4()}" for _ in range(4)]
    calls: list[Any] = [((n,), {}, task_id) for n, task_id in enumerate(ids)]
    calls[2] = (("not a number",), {}, ids[2])

    with pytest.raises(InvalidArguments, match=r"^call 2: .*x: Input should be a valid integer"):
        await needs_int.send_many(calls)
    with pytest.raises(ConfigurationError, match=r"^call 1: send_many takes \(args, kwargs\)"):
        await needs_int.send_many([((1,), {}), (1,)])  # type: ignore[list-item]

    assert await ready(app, needs_int.name) == 0
    assert await states(app, ids) == [None] * 4


async def test_a_call_whose_message_is_too_large_is_refused_before_anything_travels(
    app: TaskQueue,
) -> None:
    @app.task
    async def upload(data: str) -> None: ...

    app.max_message_size = 1000
    with pytest.raises(MessageTooLarge, match=r"^call 1: the message of task") as raised:
        await upload.send_many([(("small",), {}), (("x" * 2000,), {}), (("small",), {})])
    assert raised.value.limit == 1000
    assert await ready(app, upload.name) == 0


async def test_an_explicit_id_already_known_is_not_published_again_but_gets_its_handle(
    app: TaskQueue,
) -> None:
    runs: list[int] = []

    @app.task
    async def charge(amount: int) -> int:
        runs.append(amount)
        return amount

    first, second, third = (f"order-{uuid.uuid4()}" for _ in range(3))
    await charge.send_many([((1,), {}, first), ((2,), {}, second)])

    handles = await charge.send_many(
        [((1,), {}, first), ((3,), {}, third), ((3,), {}, third), ((9,), None)]
    )

    assert [h.id for h in handles[:3]] == [first, third, third]
    assert await ready(app, charge.name) == 4  # first, second, third once, the generated one
    async with Worker(app):
        assert [await h.result(timeout=20) for h in handles] == [1, 3, 3, 9]
    assert sorted(runs) == [1, 2, 3, 9]


async def test_send_many_by_name_needs_only_json_for_a_task_not_registered_here(
    app: TaskQueue,
) -> None:
    app.extra_task_names.append("reports.build")  # type: ignore[attr-defined]

    with pytest.raises(SerializationError, match=r"^call 1: arguments of task 'reports.build'"):
        await app.send_many("reports.build", [(("a",), {}), ((object(),), {})])
    handles = await app.send_many("reports.build", [(("a",), {"pages": 1}), (("b",), {})])

    assert [h.name for h in handles] == ["reports.build", "reports.build"]
    assert await states(app, [h.id for h in handles]) == [TaskState.QUEUED] * 2
    assert await ready(app, "reports.build") == 2


async def test_a_countdown_holds_every_call_of_the_batch_back(app: TaskQueue) -> None:
    @app.task
    async def ping() -> str:
        return "pong"

    loop = asyncio.get_running_loop()
    started = loop.time()
    async with Worker(app):
        handles = await ping.send_many([((), {})] * 3, countdown=0.6)
        assert await ready(app, ping.name) == 0
        assert [await h.result(timeout=20) for h in handles] == ["pong"] * 3
    assert loop.time() - started >= 0.55


async def test_sending_no_calls_returns_no_handles_without_connecting() -> None:
    app = TaskQueue(broker="amqp://guest:guest@127.0.0.1:1/", store="redis://127.0.0.1:1/0")

    @app.task
    async def job() -> None: ...

    assert await job.send_many([]) == []
    assert await app.send_many("anything", []) == []
    assert not app.connected


@pytest.mark.parametrize("ids", ["explicit", "generated"])
async def test_calls_the_broker_refuses_are_named_their_records_removed_and_the_rest_kept(
    app: TaskQueue,
    backend: str,
    ids: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    task = "emails.send"
    app.extra_task_names.append(task)  # type: ignore[attr-defined]
    if backend == "memory":
        refuse_after_two_in_the_memory_broker(app, monkeypatch)
    else:
        await declare_a_queue_that_takes_two(app, task, request.getfixturevalue("amqp_url"))
    given = [f"mail-{n}-{uuid.uuid4()}" for n in range(5)] if ids == "explicit" else [None] * 5

    with pytest.raises(BulkPublishError) as raised:
        await app.send_many(task, [((n,), {}, task_id) for n, task_id in enumerate(given)])

    error = raised.value
    assert isinstance(error, PublishError)
    sent = [h.id for h in error.confirmed] + error.not_confirmed
    assert len(set(sent)) == 5
    if ids == "explicit":
        assert sent == given
    assert len(error.confirmed) == 2 and len(error.not_confirmed) == 3
    assert all(isinstance(e, PublishError) for e in error.errors)
    shown = ", ".join(error.not_confirmed)
    assert f"3 of 5 calls of task {task!r} were not confirmed ({shown})" in str(error)
    assert await states(app, sent) == [TaskState.QUEUED] * 2 + [None] * 3


def refuse_after_two_in_the_memory_broker(app: TaskQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded broker nacks every publish after the second, as a full RabbitMQ
    queue with ``x-overflow: reject-publish`` does."""
    publish = app.broker.publish
    taken: list[str] = []

    async def publish_two(
        queue: QueueSpec, body: bytes, *, task_id: str, delay: float = 0.0, priority: int = 0
    ) -> None:
        if len(taken) == 2:
            raise PublishError(f"publish of task {task_id} was refused (nacked)", task_id=task_id)
        taken.append(task_id)
        await publish(queue, body, task_id=task_id, delay=delay)

    monkeypatch.setattr(app.broker, "publish", publish_two)


async def declare_a_queue_that_takes_two(app: TaskQueue, task: str, amqp_url: str) -> None:
    """Someone else's queue for ``task``, full after two messages and refusing more
    (nacks): a send by name uses it as it is."""
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        await channel.declare_queue(
            app.topology.queue_name(task),
            durable=True,
            arguments={"x-max-length": 2, "x-overflow": "reject-publish"},
        )
    finally:
        await connection.close()


async def test_a_failed_batch_can_be_sent_again_with_its_ids(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    @app.task
    async def job(n: int) -> int:
        return n

    calls: list[Any] = [((n,), {}, f"job-{n}-{uuid.uuid4()}") for n in range(3)]
    down = PublishError("the broker went away (test)")

    async def refuse(*args: object, **kwargs: object) -> list[BaseException | None]:
        raise down

    with monkeypatch.context() as patch:
        patch.setattr(app.broker, "publish_many", refuse)
        with pytest.raises(BulkPublishError) as raised:
            await job.send_many(calls)
    assert raised.value.__cause__ is down
    assert raised.value.not_confirmed == [call[2] for call in calls]
    assert raised.value.confirmed == []

    handles = await job.send_many(calls)  # the records went: published this time

    assert await eventually(lambda: ready(app, job.name), lambda n: n == 3) == 3
    async with Worker(app):
        assert [await h.result(timeout=20) for h in handles] == [0, 1, 2]
