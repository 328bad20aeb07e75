"""Inspection and cleanup on :class:`~taskq.brokers.amqp.AmqpBroker`: the dead-letter
queue browsed, requeued and purged, a queue's counts, and the whole topology deleted.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable, Sequence
from contextlib import aclosing

from aio_pika.abc import AbstractIncomingMessage

from taskq.brokers.amqp_core import AmqpCore
from taskq.brokers.amqp_declare import inspect_queue, scratch_channel
from taskq.brokers.amqp_delay import delete_levels
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.base import DeadLetter, PrepareRequeue, QueueInfo
from taskq.brokers.dead import check_ids, read_dead_letter, republish, selects
from taskq.errors import BrokerError
from taskq.logs import get_logger
from taskq.topology import Topology

log = get_logger("taskq.brokers.amqp")  # the broker's lines keep its logger name


class AmqpInspection(AmqpCore):
    """Mixed into :class:`~taskq.brokers.amqp.AmqpBroker`."""

    # -- inspection and cleanup ---------------------------------------------------

    async def dead_letters(self, limit: int = 100, *, task: str | None = None) -> list[DeadLetter]:
        letters: list[DeadLetter] = []
        async with aclosing(self._browse_dead()) as browse:
            async for _, letter in browse:
                if len(letters) < limit and selects(letter, task=task, ids=frozenset()):
                    letters.append(letter)
        return letters

    async def requeue_dead(
        self,
        *,
        task: str | None = None,
        ids: Sequence[str] = (),
        prepare: PrepareRequeue | None = None,
    ) -> list[DeadLetter]:
        wanted = check_ids(ids)
        requeued: list[DeadLetter] = []
        done: set[str | None] = set()  # task ids requeued by this call
        async with aclosing(self._browse_dead()) as browse:
            async for message, letter in browse:
                # Acked only once the publish is confirmed; the others stay held and go
                # back when the browse ends, as does this one if anything raises. A task
                # already requeued by this call that died again meanwhile stays dead.
                if (
                    selects(letter, task=task, ids=wanted)
                    and letter.task_id not in done
                    and await republish(self, letter, prepare)
                ):
                    async with self._calling():
                        await message.ack()
                    requeued.append(letter)
                    done.add(letter.task_id)
        return requeued

    async def purge_dead(self) -> int:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            async with scratch_channel(publisher.connection) as channel:
                queue = await channel.get_queue(self.topology.dead_queue, ensure=False)
                purged = await queue.purge()
        return purged.message_count or 0

    async def _browse_dead(
        self,
    ) -> AsyncGenerator[tuple[AbstractIncomingMessage, DeadLetter], None]:
        """Every message in the dead-letter queue, oldest first, each taken with
        basic.get and held unacked on a channel of the browse's own; at the end, one
        ``basic.nack(multiple, requeue)`` gives back, in order, every one not acked.

        Always the whole queue, even for a short listing: the dead-letter queue is a
        quorum queue, which puts a message given back at its *back* (RabbitMQ 3.10,
        measured), so browsing only the first few would move them behind the rest; a
        whole round leaves the order as it was. Until basic.get finds none: the count
        a passive declare gives lags, and missed the messages a browse just before had
        given back (measured), so it only caps a browse, at twice itself and 1,000
        more, for a stream of new dead letters not to keep it going. The explicit nack,
        rather than closing the channel alone, has them back in the queue before a
        later browse's first basic.get. Each step is time-boxed, not the whole browse."""
        await self.connect()
        with amqp_errors(self._url):  # opening and closing the browse's channel
            async with self._calling():
                publisher = await self._ready_publisher()
            async with scratch_channel(publisher.connection) as channel:
                async with self._calling():
                    queue = await channel.declare_queue(self.topology.dead_queue, passive=True)
                cap = 2 * (queue.declaration_result.message_count or 0) + 1000
                latest: AbstractIncomingMessage | None = None  # the last one taken
                unacked: AbstractIncomingMessage | None = None  # the last before it left
                try:
                    for _ in range(cap):
                        async with self._calling():
                            message = await queue.get(no_ack=False, fail=False)
                        if message is None:
                            return
                        if latest is not None and not latest.processed:
                            unacked = latest
                        latest = message
                        yield message, _dead_letter(self.topology, message)
                finally:
                    last = latest if latest is not None and not latest.processed else unacked
                    if last is not None:
                        try:
                            async with self._calling():
                                await last.nack(multiple=True, requeue=True)
                        except BrokerError as exc:  # its channel is gone: they are back
                            log.info("dead letters not given back by nack", error=str(exc))

    async def queue_info(self, task: str) -> QueueInfo | None:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            return await inspect_queue(publisher.connection, self.topology.queue_name(task))

    async def dead_queue_info(self) -> QueueInfo | None:
        await self.connect()
        async with self._calling():
            publisher = await self._ready_publisher()
            return await inspect_queue(publisher.connection, self.topology.dead_queue)

    async def destroy(self, tasks: Iterable[str]) -> None:
        """Delete everything this topology declared, on a connection of its own after
        closing ours: our consumers would declare their deleted queues again to restore
        them, and a publish racing the deletion of its quorum queue crashes the channel
        in RabbitMQ 3.10 (INTERNAL_ERROR, seen in the worker tests' teardown). A later
        call connects and declares again."""
        await self.close()
        t = self.topology
        connection = await self._open("destroy")
        try:
            async with self._calling(), scratch_channel(connection) as channel:
                # RabbitMQ answers delete-ok for a queue or exchange that does not exist.
                for task in tasks:
                    await channel.queue_delete(t.queue_name(task))
                    await channel.exchange_delete(t.broadcast_exchange(task))
                await channel.queue_delete(t.dead_queue)
                await channel.queue_delete(t.scheduler_queue)
                await channel.exchange_delete(t.exchange)
                await channel.exchange_delete(t.dead_exchange)
                await channel.exchange_delete(t.control_exchange)
                await delete_levels(channel, t)
        finally:
            await connection.close()
        log.info("topology destroyed", exchange=t.exchange)


def _dead_letter(topology: Topology, message: AbstractIncomingMessage) -> DeadLetter:
    return read_dead_letter(
        topology,
        body=message.body,
        routing_key=message.routing_key or "",
        headers=message.headers,
        correlation_id=message.correlation_id,
        message_id=message.message_id,
        priority=message.priority or 0,
    )
