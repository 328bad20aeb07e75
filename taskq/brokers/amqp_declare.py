"""Queue declarations that the broker may refuse, kept off the long-lived channels.

RabbitMQ closes a channel on a 406 (a queue exists with other arguments) and on a 404
(a passive check of a missing queue). aio-pika re-opens a closed *robust* channel in
the background, and that races the next call made on it: measured with aio-pika 10.2,
a publish right after a 406 raises ``ChannelInvalidStateError`` and ``channel.ready()``
does not wait for the re-open. So each risky step runs first on a plain scratch channel
that is simply dropped; the robust channels, whose declarations aio-pika replays after a
reconnect, only ever see declarations known to succeed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aio_pika
import aiormq.exceptions
from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue, AbstractRobustConnection

from taskq.brokers.base import QueueInfo
from taskq.topology import Topology


@asynccontextmanager
async def scratch_channel(connection: AbstractRobustConnection) -> AsyncIterator[AbstractChannel]:
    """A plain channel for one step: never re-opened by aio-pika, so an error that
    closes it leaves nothing running behind us."""
    channel = aio_pika.Channel(connection, publisher_confirms=False)
    await channel.initialize()
    try:
        yield channel
    finally:
        if not channel.is_closed:
            await channel.close()


async def inspect_queue(connection: AbstractRobustConnection, name: str) -> QueueInfo | None:
    """A passive declare: the queue's counts, or ``None`` when it does not exist."""
    try:
        async with scratch_channel(connection) as channel:
            queue = await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return None
    ok = queue.declaration_result
    return QueueInfo(name=name, ready=ok.message_count or 0, consumers=ok.consumer_count or 0)


async def declare_queue(
    connection: AbstractRobustConnection,
    channel: AbstractChannel,
    name: str,
    arguments: dict[str, Any],
    *,
    use_existing: bool = False,
    known: AbstractQueue | None = None,
) -> AbstractQueue:
    """Declare a durable queue on ``channel``, once the same declaration passed on a
    scratch channel (where a 406 surfaces as ``ChannelPreconditionFailed``).

    ``use_existing``: an existing queue is used as it is, declared passively (its
    arguments are not ours to know); only a missing one is declared with ``arguments``.
    ``known``: the queue object this channel already holds for ``name``, declared again
    through it so that robust channels do not collect one more object to replay.
    """
    if use_existing and await inspect_queue(connection, name) is not None:
        return await channel.declare_queue(name, passive=True)
    async with scratch_channel(connection) as scratch:
        await scratch.declare_queue(name, durable=True, arguments=arguments)
    if known is not None and known.arguments == arguments:
        await known.declare()
        return known
    return await channel.declare_queue(name, durable=True, arguments=arguments)


async def bind_task_queue(
    queue: AbstractQueue, exchange: AbstractExchange | str, task: str
) -> None:
    """Both bindings of a task queue: its task name, and the delayed form of it."""
    for key in Topology.binding_keys(task):
        await queue.bind(exchange, key)
