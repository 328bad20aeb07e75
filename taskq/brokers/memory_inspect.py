"""Inspection and cleanup on :class:`~taskq.brokers.memory.MemoryBroker`: the
dead-letter queue listed, requeued and purged, a queue's counts, and the whole
topology deleted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from taskq.brokers.base import Broker, DeadLetter, PrepareRequeue, QueueInfo
from taskq.brokers.dead import check_ids, republish, selects
from taskq.brokers.memory_queue import MemoryQueue
from taskq.topology import QueueSpec

if TYPE_CHECKING:
    from taskq.brokers.memory import MemoryConsumer


class MemoryInspection(Broker):
    """Mixed into :class:`~taskq.brokers.memory.MemoryBroker`, which sets these."""

    _queues: dict[str, MemoryQueue]
    _dead: deque[DeadLetter] | None
    _consumers: set[MemoryConsumer]
    _declared: set[QueueSpec]
    _delayed: set[asyncio.TimerHandle]

    if TYPE_CHECKING:  # defined by MemoryBroker

        def _declare_topology(self) -> deque[DeadLetter]: ...

    # -- inspection and cleanup ---------------------------------------------------

    async def dead_letters(self, limit: int = 100, *, task: str | None = None) -> list[DeadLetter]:
        chosen = [d for d in self._dead or () if selects(d, task=task, ids=frozenset())]
        return chosen[:limit]

    async def requeue_dead(
        self,
        *,
        task: str | None = None,
        ids: Sequence[str] = (),
        prepare: PrepareRequeue | None = None,
    ) -> list[DeadLetter]:
        wanted = check_ids(ids)
        dead = self._declare_topology()
        requeued = []
        for letter in [d for d in dead if selects(d, task=task, ids=wanted)]:
            if letter in dead and await republish(self, letter, prepare):
                if letter in dead:  # unless purged while it was being published
                    dead.remove(letter)
                requeued.append(letter)
        return requeued

    async def purge_dead(self) -> int:
        dead = self._declare_topology()
        count = len(dead)
        dead.clear()
        return count

    async def queue_info(self, task: str) -> QueueInfo | None:
        queue = self._queues.get(self.topology.queue_name(task))
        if queue is None:
            return None
        # Counted over every open consumer: a cancelled one still holds its deliveries.
        unacked = sum(
            len(subscription.unsettled)
            for consumer in self._consumers
            for subscription in consumer.subscriptions
            if subscription.queue is queue
        )
        return QueueInfo(
            queue.name,
            ready=len(queue.messages),
            consumers=len(queue.subscriptions),
            unacked=unacked,
        )

    async def dead_queue_info(self) -> QueueInfo | None:
        if self._dead is None:
            return None
        # Dead letters are browsed, never held by a consumer: none is ever unacked.
        return QueueInfo(self.topology.dead_queue, ready=len(self._dead), consumers=0, unacked=0)

    async def destroy(self, tasks: Iterable[str]) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        for task in tasks:
            self._queues.pop(self.topology.queue_name(task), None)
        self._dead = None
        for queue in self._queues.values():
            queue.binding_keys.clear()  # their exchange is gone, and its bindings with it
        self._declared.clear()
        for handle in self._delayed:  # and the delay queues with their messages
            handle.cancel()
        self._delayed.clear()
