"""The core promise, on the embedded broker and on RabbitMQ + Redis alike: tasks published
with confirms run on workers that ack only after the outcome is recorded."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections import Counter
from typing import Any

import pytest

from taskq import (
    InvalidArguments,
    ResultTimeout,
    SerializationError,
    TaskFailed,
    TaskQueue,
    TaskState,
    Worker,
)
from tests.helpers import eventually


async def test_async_and_sync_tasks_run_and_their_results_are_recorded(app: TaskQueue) -> None:
    @app.task
    async def add(x: int, y: int) -> int:
        return x + y

    threads: list[str] = []

    @app.task(name="emails.send")
    def send_email(user_id: uuid.UUID, subject: str) -> dict[str, Any]:
        threads.append(threading.current_thread().name)
        return {"user": str(user_id), "subject": subject}

    uid = uuid.uuid4()
    async with Worker(app, concurrency=4):
        h1 = await add.delay(1, 2)
        h2 = await send_email.send(args=(str(uid),), kwargs={"subject": "hi"})
        assert await h1.result(timeout=20) == 3
        assert await h2.result(timeout=20) == {"user": str(uid), "subject": "hi"}

    status = await h1.status()
    assert status is not None
    assert status.state is TaskState.SUCCEEDED and status.attempts == 1 and status.result == 3
    assert status.name == add.name == f"{__name__}.add"
    assert status.created_at and status.started_at and status.finished_at
    assert status.created_at <= status.started_at <= status.finished_at
    assert threads and threads[0].startswith("taskq-task")  # sync tasks run in the pool


async def test_calling_a_task_calls_the_function_and_publishes_nothing(app: TaskQueue) -> None:
    @app.task
    async def double(x: int) -> int:
        return 2 * x

    assert await double(21) == 42
    info = await app.broker.queue_info(double.name)
    assert info is None or info.ready == 0


async def test_a_task_published_before_any_worker_is_kept(app: TaskQueue) -> None:
    @app.task
    async def greet(name: str) -> str:
        return f"hello {name}"

    handle = await greet.delay("world")
    status = await handle.status()
    assert status is not None and status.state is TaskState.QUEUED
    info = await eventually(
        lambda: app.broker.queue_info(greet.name), lambda i: i is not None and i.ready == 1
    )
    assert info is not None

    async with Worker(app):
        assert await handle.result(timeout=20) == "hello world"


async def test_a_task_sent_by_name_runs_without_the_sender_importing_it(
    app: TaskQueue, backend: str, request: pytest.FixtureRequest
) -> None:
    @app.task(name="reports.build")
    async def build(report_id: uuid.UUID, pages: int = 1) -> str:
        return f"{report_id}:{pages}"

    # The sender: an app of its own that registers nothing, on the same broker and store.
    if backend == "memory":
        sender = app  # the embedded broker lives inside one app
    else:
        sender = TaskQueue(
            broker=request.getfixturevalue("amqp_url"),
            store=request.getfixturevalue("redis_url"),
            exchange=app.topology.exchange,
        )
    rid = uuid.uuid4()
    try:
        handle = await sender.send("reports.build", args=[str(rid)], kwargs={"pages": "3"})
        assert handle.name == "reports.build"
        async with Worker(app):
            assert await sender.handle(handle.id).result(timeout=20) == f"{rid}:3"
    finally:
        if sender is not app:
            await sender.close()


async def test_two_thousand_tasks_over_two_workers_all_succeed_exactly_once(app: TaskQueue) -> None:
    runs: Counter[int] = Counter()

    @app.task
    async def work(n: int) -> int:
        runs[n] += 1
        await asyncio.sleep(0)
        return n

    @app.task
    def sync_work(n: int) -> int:
        return n

    async with Worker(app, concurrency=16), Worker(app, concurrency=16):
        handles = await asyncio.gather(*(work.delay(n) for n in range(2000)))
        results = await asyncio.gather(*(h.result(timeout=120) for h in handles))
        sync_handles = await asyncio.gather(*(sync_work.delay(n) for n in range(200)))
        sync_results = await asyncio.gather(*(h.result(timeout=60) for h in sync_handles))

    assert results == list(range(2000))
    assert sync_results == list(range(200))
    assert set(runs) == set(range(2000)) and max(runs.values()) == 1
    statuses = await asyncio.gather(*(h.status() for h in handles))
    assert all(
        s is not None and s.state is TaskState.SUCCEEDED and s.attempts == 1 for s in statuses
    )
    info = await app.broker.queue_info(work.name)
    assert info is not None and info.ready == 0


async def test_a_worker_stopped_mid_task_leaves_it_to_another_worker(app: TaskQueue) -> None:
    started = asyncio.Event()
    release = asyncio.Event()
    runs: list[int] = []

    @app.task
    async def slow(n: int) -> int:
        runs.append(n)
        if len(runs) == 1:
            started.set()
            await asyncio.sleep(3600)  # the first run never finishes: its worker is stopped
        await release.wait()
        return n

    first = Worker(app, concurrency=1, grace=0.1)
    await first.start()
    handle = await slow.delay(7)
    await asyncio.wait_for(started.wait(), 20)
    async with Worker(app, concurrency=1):
        await first.stop()  # grace runs out: the task is cancelled, its message not acked
        release.set()
        assert await handle.result(timeout=30) == 7
    status = await handle.status()
    assert status is not None and status.attempts == 2 and status.state is TaskState.SUCCEEDED
    assert runs == [7, 7]


async def test_a_failing_task_is_recorded_failed_and_dead_lettered(app: TaskQueue) -> None:
    @app.task(max_retries=0)
    def explode(reason: str) -> None:
        raise RuntimeError(f"boom: {reason}")

    async with Worker(app):
        handle = await explode.delay("fuse")
        with pytest.raises(TaskFailed) as caught:
            await handle.result(timeout=20)
    status = caught.value.status
    assert status.state is TaskState.FAILED and status.attempts == 1
    assert status.error is not None
    assert status.error.type == "RuntimeError" and status.error.message == "boom: fuse"
    assert status.error.traceback and "explode" in status.error.traceback
    dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].routing_key == explode.name
    assert dead[0].reason == "task raised RuntimeError: boom: fuse (after 1 attempt)"
    assert dead[0].correlation_id == handle.id


async def test_bad_input_is_dead_lettered_with_its_reason_and_the_worker_keeps_serving(
    app: TaskQueue,
) -> None:
    @app.task(name="math.add")
    async def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="math.other")
    async def other() -> None: ...

    sender = app.broker
    spec = add.queue
    not_json_id = str(uuid.uuid4())
    bad_args_id = str(uuid.uuid4())
    unknown_id = str(uuid.uuid4())
    wrong_queue_id = str(uuid.uuid4())
    async with Worker(app):
        await sender.publish(spec, b"{not json", task_id=not_json_id)
        await sender.publish(spec, b"[1, 2]", task_id=str(uuid.uuid4()))
        await sender.publish(spec, b'{"id": "x1", "task": "math.add"}', task_id="x1")
        bad = f'{{"id": "{bad_args_id}", "task": "math.add", "args": ["one", 2], "kwargs": {{}}}}'
        await sender.publish(spec, bad.encode(), task_id=bad_args_id)
        wrong = f'{{"id": "{wrong_queue_id}", "task": "math.other", "args": [], "kwargs": {{}}}}'
        await sender.publish(spec, wrong.encode(), task_id=wrong_queue_id)
        app.extra_task_names.append("math.unknown")  # type: ignore[attr-defined]
        unknown = await app.send("math.unknown", args=[1], task_id=unknown_id)
        assert unknown.id == unknown_id
        # ...and the worker goes on serving good messages.
        assert await (await add.delay(2, 3)).result(timeout=20) == 5

    dead = await eventually(app.broker.dead_letters, lambda d: len(d) >= 5, timeout=20)
    reasons = {d.correlation_id: d.reason for d in dead}
    assert reasons[not_json_id].startswith("body is not JSON")
    assert reasons[bad_args_id].startswith("invalid arguments for task 'math.add': x:")
    assert reasons[wrong_queue_id] == "task 'math.other' arrived on the queue of task 'math.add'"
    assert "body is JSON list, not an object" in reasons.values()
    assert any("'args' must be an array" in r for r in reasons.values())
    for task_id in (not_json_id, bad_args_id, wrong_queue_id):
        status = await app.handle(task_id).status()
        assert status is not None and status.state is TaskState.FAILED, task_id
        assert status.error is not None and status.error.message == reasons[task_id]
    incomplete = await app.handle("x1").status()
    assert incomplete is not None and incomplete.state is TaskState.FAILED
    # The unknown task has no worker here: its queue is declared and holds it.
    info = await app.broker.queue_info("math.unknown")
    assert info is not None and info.ready == 1


async def test_a_worker_meeting_an_unregistered_task_dead_letters_it(app: TaskQueue) -> None:
    @app.task(name="jobs.known")
    async def known() -> str:
        return "ok"

    # Another deployment consumes the same queue but knows nothing of this task name:
    # simulate it by publishing a message naming a task the worker does not have.
    body = b'{"id": "u-1", "task": "jobs.ghost", "args": [], "kwargs": {}}'
    await app.broker.publish(known.queue, body, task_id="u-1")
    async with Worker(app):
        dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].reason == "task 'jobs.ghost' is not registered on this worker"
    status = await app.handle("u-1").status()
    assert status is not None and status.state is TaskState.FAILED and status.name == "jobs.ghost"


async def test_a_redelivered_task_that_already_succeeded_is_acked_without_running(
    app: TaskQueue,
) -> None:
    runs: list[str] = []

    @app.task
    async def once(tag: str) -> str:
        runs.append(tag)
        return tag

    async with Worker(app):
        handle = await once.delay("a")
        assert await handle.result(timeout=20) == "a"
        # The same message again, as after a lost ack.
        body = f'{{"id": "{handle.id}", "task": "{once.name}", "args": ["a"], "kwargs": {{}}}}'
        await app.broker.publish(once.queue, body.encode(), task_id=handle.id)
        await eventually(
            lambda: app.broker.queue_info(once.name), lambda i: i is not None and i.ready == 0
        )
        later = await once.delay("b")
        assert await later.result(timeout=20) == "b"
    assert runs == ["a", "b"]
    status = await handle.status()
    assert status is not None and status.attempts == 1


async def test_an_explicit_task_id_is_an_idempotency_key(app: TaskQueue) -> None:
    runs: list[int] = []

    @app.task
    async def charge(amount: int) -> int:
        runs.append(amount)
        return amount

    task_id = f"order-{uuid.uuid4()}"
    handles = await asyncio.gather(*(charge.send(args=(10,), task_id=task_id) for _ in range(10)))
    assert {h.id for h in handles} == {task_id}
    info = await eventually(
        lambda: app.broker.queue_info(charge.name), lambda i: i is not None and i.ready >= 1
    )
    assert info is not None and info.ready == 1  # published once
    async with Worker(app):
        assert await handles[0].result(timeout=20) == 10
        again = await charge.send(args=(10,), task_id=task_id)
        assert await again.result(timeout=5) == 10
    assert runs == [10]


async def test_result_raises_a_timeout_error_when_the_task_does_not_finish(app: TaskQueue) -> None:
    @app.task
    async def never() -> None:
        await asyncio.sleep(3600)

    handle = await never.delay()  # no worker: it stays queued
    with pytest.raises(TimeoutError) as caught:
        await handle.result(timeout=0.3)
    assert isinstance(caught.value, ResultTimeout)
    assert "state: queued" in str(caught.value)
    with pytest.raises(ResultTimeout):
        await app.handle(str(uuid.uuid4())).result(timeout=0.2)  # no record at all


async def test_bad_arguments_fail_at_the_sender_and_nothing_is_published(app: TaskQueue) -> None:
    @app.task
    async def needs_int(x: int) -> int:
        return x

    with pytest.raises(InvalidArguments, match="x: Input should be a valid integer"):
        await needs_int.delay("not a number")
    with pytest.raises(SerializationError, match="cannot be serialized to JSON"):
        await app.send("by.name", args=[object()])
    info = await app.broker.queue_info(needs_int.name)
    assert info is None or info.ready == 0
    assert await needs_int.send(args=("42",)) is not None  # lax mode: "42" is an int


async def test_graceful_stop_finishes_running_tasks_and_requeues_the_rest(app: TaskQueue) -> None:
    started = asyncio.Event()
    finished: list[int] = []

    @app.task
    async def step(n: int) -> int:
        started.set()
        await asyncio.sleep(0.5)
        finished.append(n)
        return n

    handles = [await step.delay(n) for n in range(5)]
    worker = Worker(app, concurrency=1, grace=10)
    await worker.start()
    await asyncio.wait_for(started.wait(), 20)
    await worker.stop()
    assert len(finished) == 1  # the running one finished; none other started
    states = [s.state for s in await asyncio.gather(*(h.status() for h in handles)) if s]
    assert states.count(TaskState.SUCCEEDED) == 1 and states.count(TaskState.QUEUED) == 4
    info = await eventually(
        lambda: app.broker.queue_info(step.name), lambda i: i is not None and i.ready == 4
    )
    assert info is not None
    async with Worker(app, concurrency=4):
        assert await asyncio.gather(*(h.result(timeout=20) for h in handles)) == list(range(5))


async def test_a_worker_that_cannot_start_leaves_nothing_running(app: TaskQueue) -> None:
    @app.task
    async def job() -> None: ...

    class Broken(Exception):
        pass

    async def refuse(*args: Any, **kwargs: Any) -> Any:
        raise Broken("no consuming today")

    app.broker.consume = refuse  # type: ignore[method-assign]
    worker = Worker(app, concurrency=3)
    before = len(asyncio.all_tasks())
    with pytest.raises(Broken):
        await worker.start()
    assert len(asyncio.all_tasks()) == before  # no runner left behind
    await worker.stop()  # idempotent after a failed start


async def test_an_unexpected_error_handling_a_message_dead_letters_it_and_the_worker_keeps_serving(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    from taskq import execution

    @app.task(name="jobs.echo")
    async def echo(text: str) -> str:
        return text

    real_decode = execution.TaskMessage.decode

    def decode(body: bytes, *, correlation_id: str | None = None) -> Any:
        if b"trip-a-bug" in body:
            raise RuntimeError("a bug of ours")
        return real_decode(body, correlation_id=correlation_id)

    monkeypatch.setattr(execution.TaskMessage, "decode", staticmethod(decode))
    async with Worker(app, concurrency=1):
        await echo.delay("trip-a-bug")
        assert await (await echo.delay("after")).result(timeout=20) == "after"
    dead = await eventually(app.broker.dead_letters, lambda d: len(d) == 1)
    assert dead[0].reason == "internal error: RuntimeError: a bug of ours"


async def test_a_send_with_an_id_of_another_task_returns_that_task_s_handle(
    app: TaskQueue,
) -> None:
    @app.task(name="a.first")
    async def first() -> str:
        return "first"

    @app.task(name="a.second")
    async def second() -> str:
        return "second"

    h = await first.send(task_id="shared-id")
    again = await second.send(task_id="shared-id")
    assert again.id == h.id and again.name == "a.first"  # nothing published for a.second
    info = await app.broker.queue_info("a.second")
    assert info is None or info.ready == 0
