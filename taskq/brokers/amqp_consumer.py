"""A consumer on RabbitMQ: one robust channel, its deliveries, and how they are settled.

How aio-pika 10 calls us: aiormq starts one task per ``basic.deliver`` (the channel's
reader never waits for a callback), and aio-pika runs our callback in another task, so
callbacks already overlap up to the prefetch. But those tasks belong to the aiormq
channel and are *cancelled* when that channel closes (a reconnect, a channel error, our
own :meth:`AmqpConsumer.close`). The callback therefore only wraps the message and starts
the handler in a task of ours: a reconnect never cancels worker code half-way through a
hand-off, and :meth:`AmqpConsumer.close` decides when handlers stop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import aiormq.exceptions
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel

from taskq.brokers.base import Consumer, Delivery, DeliveryHandler

log = structlog.get_logger(__name__)

# The channel is gone (closed by us, by the broker, or replaced after a reconnect): the
# broker has already put the message back, so there is nothing left to settle.
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError)
_DELIVERY_COUNT = "x-delivery-count"  # RabbitMQ's header on quorum-queue deliveries


def _gone(exc: Exception) -> bool:
    """Did a call on a consumer's channel fail because the channel went away? Besides
    the driver's own errors and our time box, aiormq fails what was waiting on a channel
    closed without a reason with the bare ``Exception`` class (``FutureStore.reject_all``):
    an ack queued just before a connection was cut raises exactly that (fault suite)."""
    return isinstance(exc, (*_CHANNEL_GONE, TimeoutError)) or type(exc) is Exception


class AmqpDelivery(Delivery):
    """A delivery settled on the channel that delivered it, or not at all."""

    __slots__ = ("_message", "_settled", "_timeout", "content_type")

    def __init__(
        self,
        message: AbstractIncomingMessage,
        *,
        task: str,
        queue: str,
        counted: bool,
        timeout: float,
    ) -> None:
        headers = dict(message.headers)
        count = headers.get(_DELIVERY_COUNT)
        if count is None and counted:
            count = 0  # RabbitMQ leaves the header off a quorum queue's first delivery
        super().__init__(
            body=message.body,
            task=task,
            queue=queue,
            routing_key=message.routing_key or "",
            redelivered=bool(message.redelivered),
            headers=headers,
            correlation_id=message.correlation_id,
            message_id=message.message_id,
            delivery_count=count if isinstance(count, int) else None,
        )
        self.content_type = message.content_type
        self._message = message
        self._settled = False
        self._timeout = timeout

    async def ack(self) -> None:
        await self._settle(requeue=False)

    async def requeue(self) -> None:
        await self._settle(requeue=True)

    async def _settle(self, *, requeue: bool) -> None:
        if self._settled:
            # A second basic.ack of one tag would close the channel (406) and requeue
            # every other delivery on it: refuse it here.
            log.warning("delivery already settled", queue=self.queue, message_id=self.message_id)
            return
        self._settled = True
        try:
            # aio-pika binds the tag to the aiormq channel that delivered it; once that
            # channel is closed or replaced, `message.channel` raises instead of sending a
            # tag that would mean another message on a new channel.
            # Bounded: aiormq queues the frame, then waits for the writer to send it; a
            # connection that dies in between leaves that wait unresolved, and the worker
            # slot with it (seen in the fault suite: runners stuck until the grace period).
            async with asyncio.timeout(self._timeout):
                if requeue:
                    await self._message.nack(requeue=True)
                else:
                    await self._message.ack()
        except Exception as exc:
            if not _gone(exc):
                raise
            log.info(
                "delivery not settled: its channel is closed, the broker requeues it",
                queue=self.queue,
                message_id=self.message_id,
                correlation_id=self.correlation_id,
                error=repr(exc),
            )


class AmqpConsumer(Consumer):
    """One ``consume()`` call: a channel of its own with its subscriptions."""

    def __init__(
        self,
        channel: AbstractRobustChannel,
        handler: DeliveryHandler,
        *,
        on_close: Callable[[AmqpConsumer], None],
        timeout: float,
    ) -> None:
        self._channel = channel
        self._handler = handler
        self._on_close = on_close
        #: Bound on one call to the broker (the broker's ``publish_timeout``).
        self._timeout = timeout
        self._subscriptions: list[tuple[AbstractQueue, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False
        self._closed = False

    def callback(
        self, *, task: str, queue: str, counted: bool
    ) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        """The aio-pika callback for one queue (see the module docstring). ``counted``:
        a quorum queue, which counts deliveries."""

        async def on_message(message: AbstractIncomingMessage) -> None:
            if self._closed:
                return  # its channel is closing: the broker requeues it
            delivery = AmqpDelivery(
                message, task=task, queue=queue, counted=counted, timeout=self._timeout
            )
            handling = asyncio.get_running_loop().create_task(self._handle(delivery))
            self._tasks.add(handling)
            handling.add_done_callback(self._tasks.discard)

        return on_message

    def subscribed(self, queue: AbstractQueue, consumer_tag: str) -> None:
        self._subscriptions.append((queue, consumer_tag))

    async def _handle(self, delivery: Delivery) -> None:
        try:
            await self._handler(delivery)
        except Exception:
            # Left unsettled: it goes back to its queue when this consumer closes.
            log.exception(
                "delivery handler failed", queue=delivery.queue, message_id=delivery.message_id
            )

    async def cancel(self) -> None:
        """``basic.cancel`` each subscription, without waiting for a lost connection:
        aio-pika's robust channel would wait for the reconnect, forever if the broker
        stays away (a worker told to stop then never did; fault suite). With the
        connection down the broker has already dropped these consumers and put their
        deliveries back, which could not be acked any more: the channel is closed at
        once instead, so that aio-pika does not subscribe them again on reconnect."""
        if self._cancelled:
            return
        self._cancelled = True
        for queue, tag in self._subscriptions:
            if self._channel.is_closed:  # down, or dropped during the previous cancel
                log.info("consumer's connection is down; closing its channel", queue=queue.name)
                await self._close_channel()
                return
            try:
                async with asyncio.timeout(self._timeout):
                    await queue.cancel(tag)
            except Exception as exc:
                if not _gone(exc):
                    raise
                log.info("consumer already gone", queue=queue.name, error=repr(exc))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cancelled = True
        self._on_close(self)
        # Closing the channel makes the broker requeue every unacked delivery on it.
        await self._close_channel()
        current = asyncio.current_task()
        pending = [task for task in self._tasks if task is not current]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _close_channel(self) -> None:
        """Close the channel (idempotent): no restore by aio-pika after a reconnect."""
        try:
            async with asyncio.timeout(self._timeout):
                await self._channel.close()
        except Exception as exc:
            if not _gone(exc):
                raise
            log.info("consumer channel already closed", error=repr(exc))
