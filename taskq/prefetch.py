"""A worker's subscriptions, one per prefetch: how ``@app.task(prefetch=...)`` is kept.

A worker takes up to ``prefetch`` unsettled messages from each task queue (AMQP
``basic.qos``, per consumer), by default its ``concurrency``. Those are taken in the
order they stood in the queue when taken: a higher priority message published after
them waits until they are done. So with the default a priority task's worker holds up
to ``--concurrency`` lower ones ahead of a new higher one; ``prefetch=1`` makes it take
the next message only once the last is settled, which is strict priority order (and
runs at most one of that task at a time per worker).

``basic.qos`` belongs to a channel, and a ``consume()`` call is one channel: so the
tasks are grouped by their prefetch, one ``consume()`` call per group. Tasks without a
``prefetch`` of their own make exactly the single call a worker always made; a worker
with no such option has one group and gets the broker's consumer itself.

    consumer = await consume_tasks(broker, tasks, handler, concurrency=16)
    ...
    await consumer.cancel(); await consumer.close()
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from taskq.brokers.base import Broker, Consumer, DeliveryHandler
from taskq.task import Task
from taskq.topology import QueueSpec
from taskq.workerid import new_worker_id


def prefetch_groups(
    tasks: Sequence[Task[Any, Any]], *, concurrency: int
) -> dict[int, list[QueueSpec]]:
    """Task queues by the prefetch they are consumed with (a task's own, else
    ``concurrency``), the worker's default group first."""
    groups: dict[int, list[QueueSpec]] = {concurrency: []}
    for task in tasks:
        if task.broadcast:  # no queue of its own: consume_tasks subscribes it apart
            continue
        groups.setdefault(task.prefetch or concurrency, []).append(task.queue)
    return {prefetch: queues for prefetch, queues in groups.items() if queues}


async def consume_tasks(
    broker: Broker,
    tasks: Sequence[Task[Any, Any]],
    handler: DeliveryHandler,
    *,
    concurrency: int,
    worker: str | None = None,
) -> Consumer:
    """Consume ``tasks``' queues into ``handler``, one ``broker.consume`` call per
    prefetch group, and the broadcast tasks' queues of ``worker`` in one more
    (:mod:`taskq.broadcast`). If one call fails, the groups already consuming are
    closed (their deliveries go back) and the error is raised."""
    consumers: list[Consumer] = []
    broadcasts = [task.name for task in tasks if task.broadcast]
    try:
        for prefetch, queues in prefetch_groups(tasks, concurrency=concurrency).items():
            consumers.append(await broker.consume(queues, handler, prefetch=prefetch))
        if broadcasts:
            consumers.append(
                await broker.consume_broadcast(
                    broadcasts, worker or new_worker_id(), handler, prefetch=concurrency
                )
            )
    except BaseException:
        await ConsumerGroup(consumers).close()
        raise
    return consumers[0] if len(consumers) == 1 else ConsumerGroup(consumers)


class ConsumerGroup(Consumer):
    """Several consumers that cancel and close as one, as the single consumer did:
    each is asked even if another fails, then the first error is raised."""

    def __init__(self, consumers: Sequence[Consumer]) -> None:
        self.consumers = list(consumers)

    async def cancel(self) -> None:
        await _each(self.consumers, lambda consumer: consumer.cancel())

    async def close(self) -> None:
        await _each(self.consumers, lambda consumer: consumer.close())


async def _each(consumers: Sequence[Consumer], call: Callable[[Consumer], Awaitable[None]]) -> None:
    results = await asyncio.gather(*(call(c) for c in consumers), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
