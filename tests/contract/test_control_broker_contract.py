"""What every broker promises about control messages (``publish_control``,
``consume_control``: how a cancel reaches the worker running the task), on the
embedded broker and RabbitMQ alike: every worker listening now gets each message once,
in order; one that leaves gets no more; nobody listening is no error."""

from __future__ import annotations

import asyncio

from taskq import TaskQueue
from tests.contract.test_scheduler_broker_contract import recorder, until

__all__: list[str] = []


async def test_every_worker_listening_gets_each_control_message_once_in_order(
    app: TaskQueue,
) -> None:
    broker = app.broker
    first: list[bytes] = []
    second: list[bytes] = []
    one = await broker.consume_control("host-1", recorder(first))
    two = await broker.consume_control("host-2", recorder(second))
    try:
        for n in range(5):
            await broker.publish_control(b"cancel-%d" % n)
        expected = [b"cancel-%d" % n for n in range(5)]
        await until(lambda: len(first) == 5 and len(second) == 5)
        await asyncio.sleep(0.2)  # nothing more comes
        assert first == expected and second == expected

        await one.close()  # a worker that stopped: the others still hear
        await broker.publish_control(b"after")
        await until(lambda: second[-1:] == [b"after"])
        await asyncio.sleep(0.2)
        assert first == expected
    finally:
        await one.close()
        await two.close()


async def test_a_control_message_with_nobody_listening_is_no_error_and_is_not_kept(
    app: TaskQueue,
) -> None:
    broker = app.broker
    await broker.publish_control(b"to nobody")  # confirmed, not mandatory
    later: list[bytes] = []
    consumer = await broker.consume_control("host-late", recorder(later))
    try:
        await broker.publish_control(b"heard")
        await until(lambda: later == [b"heard"])
    finally:
        await consumer.close()


async def test_a_handler_that_raises_loses_no_later_message(app: TaskQueue) -> None:
    broker = app.broker
    seen: list[bytes] = []

    async def handler(body: bytes) -> None:
        seen.append(body)
        if body == b"bad":
            raise ValueError("a control message it cannot read")

    consumer = await broker.consume_control("host-raising", handler)
    try:
        for body in (b"bad", b"good"):
            await broker.publish_control(body)
        await until(lambda: seen == [b"bad", b"good"])
    finally:
        await consumer.close()
