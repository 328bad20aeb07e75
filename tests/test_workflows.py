"""Workflows (chain, group, chord) on the embedded broker: results flow from step to
step, groups join in member order, failures and cancels stop what follows, and a
redelivered step publishes nothing twice. ``test_workflows_amqp`` runs the same
specifications on RabbitMQ + Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

import taskq
from taskq import (
    ConfigurationError,
    InvalidArguments,
    Reject,
    Signature,
    TaskCancelled,
    TaskFailed,
    TaskQueue,
    TaskState,
    UnknownTask,
    Worker,
    WorkflowState,
)
from taskq.message import TaskMessage
from taskq.workflows import from_dict
from tests.helpers import eventually


@pytest.fixture
def backend() -> str:
    return "memory"


def make_tasks(app: TaskQueue) -> dict[str, Any]:
    """add, mul, total, fail, slow, record_error; ``ran`` lists every call."""
    ran: list[tuple[str, Any]] = []

    @app.task(name="wf.add")
    async def add(x: int, y: int) -> int:
        ran.append(("add", (x, y)))
        return x + y

    @app.task(name="wf.mul")
    async def mul(x: int, y: int) -> int:
        ran.append(("mul", (x, y)))
        return x * y

    @app.task(name="wf.total")
    def total(values: list[int]) -> int:
        ran.append(("total", values))
        return sum(values)

    @app.task(name="wf.fail", max_retries=0)
    async def fail(x: int) -> int:
        ran.append(("fail", x))
        raise Reject(f"no {x}")

    @app.task(name="wf.slow")
    async def slow(x: int, seconds: float = 30.0) -> int:
        ran.append(("slow", x))
        await asyncio.sleep(seconds)
        return x

    @app.task(name="wf.record_error")
    async def record_error(task_id: str, tag: str) -> str:
        ran.append(("record_error", (task_id, tag)))
        return task_id

    return {
        "add": add,
        "mul": mul,
        "total": total,
        "fail": fail,
        "slow": slow,
        "record_error": record_error,
        "ran": ran,
    }


async def test_a_chain_passes_each_result_to_the_next_step(app: TaskQueue) -> None:
    t = make_tasks(app)
    async with Worker(app, concurrency=4):
        wf = await taskq.chain(t["add"].s(1, 2), t["mul"].s(10), t["add"].s(5)).delay()
        assert await wf.result(timeout=20) == 35  # (1 + 2) * 10 + 5

    status = await wf.status()
    assert status is not None and status.state is WorkflowState.SUCCEEDED
    # Steps run under deterministic ids: <workflow id>.<position>.
    assert list(status.tasks) == [f"{wf.id}.0", f"{wf.id}.1", f"{wf.id}.2"]
    assert [s.result for s in status.tasks.values() if s is not None] == [3, 30, 35]
    assert status.tree.kind == "chain" and [c.name for c in status.tree.children] == [
        "wf.add",
        "wf.mul",
        "wf.add",
    ]


async def test_an_immutable_step_ignores_the_previous_result(app: TaskQueue) -> None:
    t = make_tasks(app)
    async with Worker(app):
        wf = await taskq.chain(t["add"].s(1, 2), t["add"].si(100, 1)).delay()
        assert await wf.result(timeout=20) == 101


async def test_a_group_returns_its_members_results_in_member_order(app: TaskQueue) -> None:
    t = make_tasks(app)
    async with Worker(app, concurrency=8):
        wf = await taskq.group(t["add"].s(i, i) for i in range(10)).delay()
        assert await wf.result(timeout=20) == [2 * i for i in range(10)]


async def test_a_chord_calls_its_callback_once_with_every_result(app: TaskQueue) -> None:
    t = make_tasks(app)
    async with Worker(app, concurrency=8):
        wf = await taskq.chord([t["add"].s(i, 1) for i in range(20)], t["total"].s()).delay()
        assert await wf.result(timeout=20) == sum(range(1, 21))
    totals = [args for name, args in t["ran"] if name == "total"]
    assert totals == [list(range(1, 21))]


async def test_chains_hold_groups_and_chords_and_the_reverse(app: TaskQueue) -> None:
    t = make_tasks(app)
    add, mul, total = t["add"], t["mul"], t["total"]
    inner = taskq.chord([add.s(1), mul.s(3)], total.s())  # gets 2: [3, 6] -> 9
    flow = taskq.chain(
        add.s(1, 1),  # 2
        taskq.group(inner, taskq.chain(add.s(10), mul.s(2))),  # [9, 24]
        total.s(),  # 33
        taskq.group(add.s(1), add.s(2)),  # [34, 35]
    )
    async with Worker(app, concurrency=8):
        wf = await flow.delay()
        assert await wf.result(timeout=20) == [34, 35]
    status = await wf.status()
    assert status is not None and all(s is not None for s in status.tasks.values())
    assert f"{wf.id}.1.0.0.1" in status.tasks  # chain 1 > group 0 > chord header 0 > member 1


async def test_a_failing_middle_step_fails_the_workflow_and_the_last_never_publishes(
    app: TaskQueue,
) -> None:
    t = make_tasks(app)
    flow = taskq.chain(
        t["add"].s(1, 2),
        t["fail"].s(),
        t["add"].s(1),
        link_error=t["record_error"].s("chain"),
    )
    async with Worker(app):
        wf = await flow.delay()
        with pytest.raises(TaskFailed, match=rf"wf\.fail \[{wf.id}\.1\] failed: Reject: no 3"):
            await wf.result(timeout=20)
        errback = app.handle(f"{wf.id}.error")
        assert await errback.result(timeout=20) == f"{wf.id}.1"  # called with the failed id

    status = await wf.status()
    assert status is not None and status.state is WorkflowState.FAILED
    assert status.failed_step == f"{wf.id}.1" and status.error is not None
    assert status.error.type == "Reject"
    assert status.tasks[f"{wf.id}.2"] is None  # never published
    assert await app.store.get(f"{wf.id}.2") is None
    assert [name for name, _ in t["ran"]] == ["add", "fail", "record_error"]


async def test_a_failing_chord_member_never_fires_the_callback(app: TaskQueue) -> None:
    t = make_tasks(app)
    flow = taskq.chord(
        [t["add"].s(1, 1), t["fail"].s(7), t["add"].s(2, 2)],
        t["total"].s(),
        link_error=t["record_error"].s("chord"),
    )
    async with Worker(app, concurrency=4):
        wf = await flow.delay()
        with pytest.raises(TaskFailed, match=r"Reject: no 7"):
            await wf.result(timeout=20)
        assert await app.handle(f"{wf.id}.error").result(timeout=20) == f"{wf.id}.0.1"
        await eventually(wf.status, lambda s: s is not None and s.tasks[f"{wf.id}.0.2"] is not None)
    assert await app.store.get(f"{wf.id}.1") is None
    assert "total" not in [name for name, _ in t["ran"]]


async def test_a_redelivered_step_publishes_nothing_twice(app: TaskQueue) -> None:
    """A crash after a step's outcome is recorded and before its ack redelivers it:
    here, its message published again after the whole workflow ran."""
    t = make_tasks(app)
    add, total = t["add"], t["total"]
    async with Worker(app, concurrency=4):
        wf = await taskq.chain(add.s(1, 1), taskq.chord([add.s(1), add.s(2)], total.s())).delay()
        assert await wf.result(timeout=20) == 7  # 2 -> [3, 4] -> 7
        calls = len(t["ran"])
        for position, args in (("0", [1, 1]), ("1.0.1", [2, 2])):
            step = TaskMessage(
                f"{wf.id}.{position}", add.name, args, {}, {"id": wf.id, "path": position}
            )
            await app.broker.publish(add.queue, step.encode(), task_id=step.id)
        await eventually(
            lambda: app.broker.queue_info(add.name),
            lambda i: i is not None and i.ready == 0 and i.unacked in (0, None),
            timeout=10,
        )
        await asyncio.sleep(0.3)
    assert len(t["ran"]) == calls  # no step ran again, no callback fired twice
    assert [args for name, args in t["ran"] if name == "total"] == [[3, 4]]


async def test_a_cancelled_workflow_publishes_nothing_more(app: TaskQueue) -> None:
    t = make_tasks(app)
    async with Worker(app):
        wf = await taskq.chain(t["slow"].s(1), t["add"].s(1)).delay()
        first = app.handle(f"{wf.id}.0")
        await eventually(first.status, lambda s: s is not None and s.state is TaskState.STARTED)
        assert await wf.cancel() is True
        with pytest.raises(TaskCancelled):
            await wf.result(timeout=10)
        await eventually(first.status, lambda s: s is not None and s.state is TaskState.CANCELLED)
    assert await app.store.get(f"{wf.id}.1") is None
    assert await wf.cancel() is False  # finished already


async def test_a_cancelled_step_cancels_the_rest(app: TaskQueue) -> None:
    t = make_tasks(app)
    wf = await taskq.group(t["add"].s(1, 1), t["add"].s(2, 2)).delay()
    assert await app.cancel(f"{wf.id}.0") is True  # before any worker runs
    async with Worker(app, concurrency=1):  # member 0 meets its worker first
        await eventually(wf.status, lambda s: s is not None and s.state is WorkflowState.CANCELLED)
        await eventually(
            lambda: app.broker.queue_info("wf.add"), lambda i: i is not None and i.ready == 0
        )
    status = await wf.status()
    assert status is not None
    assert all(s is not None and s.state is TaskState.CANCELLED for s in status.tasks.values())
    assert t["ran"] == []


async def test_a_workflow_can_be_built_by_name_and_from_json(app: TaskQueue) -> None:
    t = make_tasks(app)
    flow = taskq.chain(
        app.signature("wf.add", [2, 3]), app.signature("wf.mul", kwargs={"y": 4}, countdown=0.1)
    )
    data = json.loads(json.dumps(flow.to_dict()))
    assert from_dict(data) == flow
    assert data["steps"][1] == {
        "type": "task",
        "task": "wf.mul",
        "args": [],
        "kwargs": {"y": 4},
        "options": {"countdown": 0.1},
    }
    async with Worker(app):
        wf = await app.send_workflow(from_dict(data), workflow_id="order-42")
        assert wf.id == "order-42"
        assert await app.workflow("order-42").result(timeout=20) == 20
        # The id is an idempotency key: nothing is sent again.
        again = await app.send_workflow(flow, workflow_id="order-42")
        assert await again.result(timeout=5) == 20
    assert len(t["ran"]) == 2


async def test_bad_workflows_are_refused_before_anything_is_sent(app: TaskQueue) -> None:
    t = make_tasks(app)
    with pytest.raises(ConfigurationError, match="at least one"):
        taskq.chain()
    with pytest.raises(ConfigurationError, match="signatures"):
        taskq.group(t["add"])
    with pytest.raises(InvalidArguments):
        await taskq.chain(t["add"].s("x", 1), t["mul"].s(2)).delay()
    with pytest.raises(ConfigurationError, match="knows no app"):
        await taskq.chain(Signature("wf.add", [1, 2])).delay()
    assert await app.store.recent() == []
    with pytest.raises(UnknownTask):
        await app.workflow("never-sent").result(timeout=1)
    assert await app.workflow("never-sent").status() is None


async def test_a_task_outside_any_workflow_carries_no_workflow_field(app: TaskQueue) -> None:
    t = make_tasks(app)
    body = TaskMessage("x", "wf.add", [1, 2], {}).encode()
    assert b"workflow" not in body
    async with Worker(app):
        assert await (await t["add"].delay(1, 2)).result(timeout=10) == 3


async def test_a_crash_between_the_fire_claim_and_the_publish_is_repaired_by_the_redelivery(
    app: TaskQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The member that claimed a group's fire fails to publish the callback (its worker
    "dies": the broker refuses); its message is requeued, and its redelivery fires
    again, once."""
    from taskq.errors import PublishError
    from taskq.workflows import advance

    t = make_tasks(app)
    real = advance.publish_steps
    refused: list[str] = []

    async def flaky(app_: TaskQueue, workflow_id: str, items: Any) -> list[str]:
        if not refused:
            refused.append(workflow_id)
            raise PublishError("connection lost")
        return await real(app_, workflow_id, items)

    monkeypatch.setattr(advance, "publish_steps", flaky)
    monkeypatch.setattr(advance, "RETRY_PAUSE", 0.01)
    async with Worker(app, concurrency=4):
        wf = await taskq.chord([t["add"].s(i, 1) for i in range(5)], t["total"].s()).delay()
        assert await wf.result(timeout=20) == 15
    assert refused == [wf.id]
    assert [args for name, args in t["ran"] if name == "total"] == [[1, 2, 3, 4, 5]]
    assert len([name for name, _ in t["ran"] if name == "add"]) == 5  # none ran twice
