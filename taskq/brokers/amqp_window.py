"""The publishing machinery behind :class:`~taskq.brokers.amqp.AmqpBroker`'s
``publish_many`` and ``dead_letter``: one window of confirms (:mod:`taskq.brokers.amqp_publish`),
where a publish goes (the task exchange or a delay level), and a returned message's
queue declared again and the message retried once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aio_pika
import aiormq
import aiormq.exceptions
from aio_pika.abc import AbstractExchange, DeliveryMode

from taskq.brokers import amqp_failover as failover
from taskq.brokers.amqp_consumer import AmqpDelivery
from taskq.brokers.amqp_core import AmqpCore, _Publisher
from taskq.brokers.amqp_publish import message_id, publish_window, returned, translate, underlay
from taskq.brokers.base import Delivery, Outgoing
from taskq.brokers.dead import dead_letter_headers
from taskq.errors import BrokerError
from taskq.logs import get_logger
from taskq.topology import QueueSpec, delay_level, delay_routing_key
from taskq.urls import scrub

log = get_logger("taskq.brokers.amqp")  # the broker's lines keep its logger name


@dataclass(frozen=True)
class _Target:
    """The exchange and routing key a publish goes to, and how to declare its queue
    again when the broker returns it unroutable."""

    exchange: str
    routing_key: str
    redeclare: Callable[[], Awaitable[None]]


class AmqpPublishWindow(AmqpCore):
    """Mixed into :class:`~taskq.brokers.amqp.AmqpBroker`."""

    async def _publish_window(
        self,
        queue: QueueSpec,
        units: int,
        window: Sequence[Outgoing],
        *,
        task_id: str | None,
        priority: int = 0,
    ) -> list[BaseException | None]:
        """One window, its confirms awaited together, all within ``publish_timeout``
        (the declarations, the publishes, the retry of returned messages and, with
        several nodes, of messages caught by a lost node or a nack:
        :mod:`taskq.brokers.amqp_failover`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.publish_timeout
        # Kept across retries: a message published again is the same message.
        ids = [message_id() for _ in window]
        used: aiormq.Channel | None
        try:
            outcomes, used = await self._attempt(
                queue, units, window, ids, task_id, priority, deadline
            )
        except BrokerError as exc:
            if not (self._fails_over and failover.worth_retrying(exc)):
                raise
            # Its node went before anything was published: retried below.
            outcomes, used = [exc] * len(window), None
        attempt = 0
        while self._fails_over and (again := failover.to_retry(outcomes)):
            left = deadline - loop.time()
            if left <= 0:
                break
            attempt += 1
            if used is not None and failover.nacked([outcomes[index] for index in again]):
                await failover.drop_nacking_channel(used)
            log.info(
                "publish failed over",
                attempt=attempt,
                messages=len(again),
                error=scrub(repr(outcomes[again[0]]), self._url),
            )
            await asyncio.sleep(failover.pause(attempt, left))
            try:
                retried, used = await self._attempt(
                    queue,
                    units,
                    [window[index] for index in again],
                    [ids[index] for index in again],
                    task_id,
                    priority,
                    deadline,
                )
            except BrokerError as exc:  # the declarations before the publish failed
                retried, used = [exc] * len(again), None
            for index, outcome in zip(again, retried, strict=True):
                # A retry that only ran out of time keeps the error that caused it.
                if not (loop.time() >= deadline and failover.timed_out(outcome)):
                    outcomes[index] = outcome
        first = outcomes[0]
        if isinstance(first, BrokerError) and all(outcome is first for outcome in outcomes):
            raise first  # never got as far as publishing: raised, as without failover
        task_ids = [message[0] for message in window]
        return translate(outcomes, task_ids, self._url, self.publish_timeout)

    async def _attempt(
        self,
        queue: QueueSpec,
        units: int,
        window: Sequence[Outgoing],
        ids: Sequence[str],
        task_id: str | None,
        priority: int,
        deadline: float,
    ) -> tuple[list[BaseException | None], aiormq.Channel]:
        """Publish ``window`` once (its returned messages declared again and retried
        once); the driver's outcome of each and the channel they went out on."""
        async with self._calling(publishing=True, task_id=task_id, deadline=deadline):
            publisher = await self._ready_publisher()
            # Before a delayed publish too: its message comes back to the task exchange,
            # and needs the queue's delay binding there.
            await self._ensure_queue(publisher, queue)
            target = await self._target(publisher, queue, units)
            channel = underlay(await publisher.channel.get_underlay_channel())

        async def publish(
            items: Sequence[Outgoing], item_ids: Sequence[str]
        ) -> list[BaseException | None]:
            left = max(0.0, deadline - asyncio.get_running_loop().time())
            return await publish_window(
                channel,
                target.exchange,
                target.routing_key,
                items,
                timeout=left,
                priority=priority,
                message_ids=item_ids,
            )

        outcomes = await publish(window, ids)
        again = [index for index, outcome in enumerate(outcomes) if returned(outcome)]
        if again:
            # Returned: the queue (or delay level) went away behind our back. Declare it
            # again and retry those once.
            log.warning(
                "publish returned unroutable; declaring the queue again",
                exchange=target.exchange,
                routing_key=target.routing_key,
                returned=len(again),
            )
            async with self._calling(publishing=True, task_id=task_id, deadline=deadline):
                await target.redeclare()
                channel = underlay(await publisher.channel.get_underlay_channel())
            retried = await publish(
                [window[index] for index in again], [ids[index] for index in again]
            )
            for index, outcome in zip(again, retried, strict=True):
                outcomes[index] = outcome
        return outcomes, channel

    async def _target(self, publisher: _Publisher, queue: QueueSpec, units: int) -> _Target:
        """Where a publish goes: the task exchange, or for a delay the level of its
        highest bit, from which RabbitMQ hands it down the levels and back to the task
        exchange (``taskq.topology``); confirmed once it is in that level's queue."""
        if not units:

            async def redeclare_queue() -> None:
                publisher.declared.discard(queue)
                await self._ensure_queue(publisher, queue)

            return _Target(self.topology.exchange, queue.task, redeclare_queue)
        top = delay_level(units)
        levels = publisher.delays
        await levels.ensure(publisher.connection, top)

        async def redeclare_level() -> None:
            levels.forget()
            await levels.ensure(publisher.connection, top)

        return _Target(
            self.topology.delay_exchange(top), delay_routing_key(units, queue.task), redeclare_level
        )

    async def _publish_mandatory(
        self,
        exchange: AbstractExchange,
        routing_key: str,
        message: Callable[[], aio_pika.Message],
        redeclare: Callable[[], Awaitable[None]],
    ) -> None:
        """Publish and wait for the confirm. A return means the queue went away behind
        our back (deleted, or unbound): declare it again and retry once."""
        try:
            await exchange.publish(
                message(), routing_key, mandatory=True, timeout=self.publish_timeout
            )
        except aiormq.exceptions.PublishError:
            log.warning(
                "publish returned unroutable; declaring the queue again",
                exchange=exchange.name,
                routing_key=routing_key,
            )
            await redeclare()
            await exchange.publish(
                message(), routing_key, mandatory=True, timeout=self.publish_timeout
            )

    async def dead_letter(self, delivery: Delivery, reason: str) -> None:
        await self.connect()
        headers = dead_letter_headers(
            _publishable(delivery.headers), reason=reason, queue=delivery.queue
        )
        content_type = delivery.content_type if isinstance(delivery, AmqpDelivery) else None

        def message() -> aio_pika.Message:
            return aio_pika.Message(
                delivery.body,
                headers=headers,
                delivery_mode=DeliveryMode.PERSISTENT,
                content_type=content_type,
                correlation_id=delivery.correlation_id,
                message_id=message_id(),
                priority=delivery.priority or None,  # kept for a requeue
            )

        async with self._calling(publishing=True, task_id=delivery.correlation_id):
            publisher = await self._ready_publisher()
            await self._publish_mandatory(
                publisher.dead_exchange,
                delivery.routing_key,
                message,
                lambda: self._declare_dead_queue(publisher),
            )


def _publishable(value: Any) -> Any:
    """Headers as received, made publishable again: pamqp decodes a long string that is
    not UTF-8 (another client's binary header) as ``bytes``, which it cannot encode;
    as a ``bytearray`` it goes out as an AMQP byte array with the same bytes."""
    if isinstance(value, bytes):
        return bytearray(value)
    if isinstance(value, Mapping):
        return {key: _publishable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_publishable(item) for item in value]
    return value
