"""What every broker promises about the schedulers' lease (``consume_scheduler``,
``publish_scheduler_heartbeat``), on the embedded broker and RabbitMQ alike: one
consumer at a time receives, the next in line once it leaves."""

from __future__ import annotations

import asyncio
from typing import Any

from taskq import TaskQueue

__all__: list[str] = []


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def recorder(into: list[bytes]) -> Any:
    async def handler(body: bytes) -> None:
        into.append(body)

    return handler


async def test_heartbeats_reach_only_the_first_consumer_until_it_leaves(app: TaskQueue) -> None:
    broker = app.broker
    first: list[bytes] = []
    second: list[bytes] = []
    lost: list[str] = []
    one = await broker.consume_scheduler(recorder(first), lost=lambda: lost.append("one"))
    two = await broker.consume_scheduler(recorder(second), lost=lambda: lost.append("two"))
    try:
        for n in range(3):
            await broker.publish_scheduler_heartbeat(b"beat-%d" % n)
        await until(lambda: len(first) == 3)
        await asyncio.sleep(0.2)
        assert first == [b"beat-0", b"beat-1", b"beat-2"] and second == []
        await one.close()  # as a dead connection would: the lease moves on
        await until(lambda: lost == ["one"])
        await broker.publish_scheduler_heartbeat(b"beat-3")
        await until(lambda: second == [b"beat-3"])
        assert first == [b"beat-0", b"beat-1", b"beat-2"]
    finally:
        await one.close()
        await two.close()


async def test_a_heartbeat_published_before_anyone_consumes_is_not_an_error(
    app: TaskQueue,
) -> None:
    await app.broker.publish_scheduler_heartbeat(b"nobody yet")
