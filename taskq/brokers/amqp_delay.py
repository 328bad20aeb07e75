"""Delay levels on RabbitMQ: declared when a delayed publish first needs them.

The shape is in :mod:`taskq.topology`: level k is a topic exchange and a quorum queue,
both ``<exchange>.delay.<k>``; the queue holds each message ``2**k`` units and then
dead-letters it to level k - 1 (level 0: to ``<exchange>``). A delayed publish needs the
levels from its highest bit down, so the first one that needs level ``top`` declares
levels 0 .. ``top``; the levels declared are remembered until the connection reconnects,
like the publisher's task queues.

Each level is declared on a robust channel of its own, so aio-pika declares it again
after a reconnect, and in an order that cannot fail: aio-pika replays a channel's
exchanges in the order they were first declared, each with the exchange-to-exchange
bindings made through it, and a binding whose source does not exist yet fails the
channel's whole replay with NOT_FOUND, at every retry. Level k's '0' binding has level
k as its source and the level below as its destination; on one shared channel the
destination would come first. On its own channel, level k declares its exchange, then
its target, then binds. (aio-pika 10.2 retries a channel that missed an entity after
the others, so the order between channels does not matter.) The levels' channels also
declare in parallel: a quorum queue takes a while to create.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aio_pika.abc import (
    AbstractChannel,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
    ExchangeType,
)

from taskq.brokers.amqp_declare import declare_queue
from taskq.logs import get_logger
from taskq.topology import DELAY_LEVELS, Topology, delay_pattern

log = get_logger(__name__)


@dataclass(eq=False)
class _Level:
    """One level's robust objects, kept across reconnects and declared again through
    the same objects, so a robust channel never collects one more to replay."""

    channel: AbstractRobustChannel
    exchange: AbstractRobustExchange
    #: Where this level sends a message on: the level below, or the task exchange.
    target: AbstractRobustExchange
    queue: AbstractQueue


class DelayLevels:
    """The delay levels of one publishing connection."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self._levels: dict[int, _Level] = {}
        #: Levels 0 .. ``_declared - 1`` are declared since the connection (re)connected.
        self._declared = 0
        self._lock = asyncio.Lock()

    def forget(self) -> None:
        """After a reconnect: declare again before the next delayed publish."""
        self._declared = 0

    async def ensure(self, connection: AbstractRobustConnection, top: int) -> None:
        """Declare levels 0 .. ``top`` unless they are already: a delay whose highest
        bit is ``top`` is published to level ``top``'s exchange."""
        if top >= self._declared:
            async with self._lock:
                if top >= self._declared:
                    started = time.perf_counter()
                    try:
                        async with asyncio.TaskGroup() as group:
                            for level in range(self._declared, top + 1):
                                group.create_task(self._declare(connection, level))
                    except BaseExceptionGroup as failed:
                        # The driver's error itself, as a one-by-one declare would raise
                        # it, for amqp_errors to translate (a 406: QueueMismatch).
                        raise failed.exceptions[0] from None
                    log.debug(
                        "delay levels declared",
                        exchange=self.topology.exchange,
                        levels=f"{self._declared}..{top}",
                        seconds=round(time.perf_counter() - started, 3),
                    )
                    self._declared = top + 1

    async def _declare(self, connection: AbstractRobustConnection, level: int) -> None:
        known = self._levels.get(level)
        if known is None:
            self._levels[level] = known = await self._open_level(connection, level)
        else:
            await known.channel.ready()  # aio-pika may still be restoring it
            await known.exchange.declare()
            await known.target.declare()
            await declare_queue(
                connection,
                known.channel,
                known.queue.name,
                self.topology.delay_queue_arguments(level),
                known=known.queue,
            )
        await known.queue.bind(known.exchange, delay_pattern(level, "1"))
        await known.target.bind(known.exchange, delay_pattern(level, "0"))

    async def _open_level(self, connection: AbstractRobustConnection, level: int) -> _Level:
        t = self.topology
        channel = await connection.channel(publisher_confirms=False)
        try:
            exchange = await channel.declare_exchange(
                t.delay_exchange(level), ExchangeType.TOPIC, durable=True
            )
            target = await channel.declare_exchange(
                t.delay_target(level), ExchangeType.TOPIC, durable=True
            )
            queue = await declare_queue(
                connection, channel, t.delay_queue(level), t.delay_queue_arguments(level)
            )
        except BaseException:
            await channel.close()  # not kept: nothing would ever close it
            raise
        return _Level(channel, exchange, target, queue)


async def delete_levels(channel: AbstractChannel, topology: Topology) -> None:
    """Delete every level's queue and exchange, declared or not: RabbitMQ answers
    delete-ok for one that does not exist."""
    for level in range(DELAY_LEVELS):
        await channel.queue_delete(topology.delay_queue(level))
        await channel.exchange_delete(topology.delay_exchange(level))
