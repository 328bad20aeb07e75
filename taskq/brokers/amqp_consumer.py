"""A consumer on RabbitMQ: one robust channel, its deliveries, and how they are settled.

Deliveries come straight from aiormq, not through aio-pika's ``Queue.consume``: that
wraps each one in an ``IncomingMessage`` (thirty-odd attributes set one by one) and a
task of its own before our callback runs, about a quarter of the worker's CPU per
message at a few thousand a second (issue 5). aio-pika's robust channel still owns
the channel: it reopens it after a reconnect and declares and binds its queues again;
then its ``reopen_callbacks`` call :meth:`AmqpConsumer._resubscribe`, which consumes
them again with the same consumer tags. A consumer the broker cancels (its queue
deleted) is declared and subscribed again the same way.

aiormq runs our callback in a task of the channel's, which the channel cancels when it
closes; for a handler marked :func:`~taskq.brokers.base.nonblocking` (the worker's) it
runs in the channel's reader itself (:func:`deliver_inline`). Either way the callback
only wraps the message and hands it on (``put_nowait`` into the worker's inbox), so
there is nothing half-done for a cancellation to cut. Acks go
through :class:`~taskq.brokers.amqp_acks.ChannelAcks`: several per frame.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiormq.exceptions
from aio_pika.abc import AbstractExchange, AbstractQueue, AbstractRobustChannel
from aiormq.abc import AbstractChannel, DeliveredMessage
from pamqp import commands as spec

from taskq.brokers.amqp_acks import ChannelAcks
from taskq.brokers.amqp_declare import bind_task_queue
from taskq.brokers.base import NONBLOCKING, Consumer, Delivery, DeliveryHandler
from taskq.logs import get_logger

log = get_logger(__name__)

# The channel is gone (closed by us, by the broker, or replaced after a reconnect): the
# broker has already put the message back, so there is nothing left to settle.
_CHANNEL_GONE = (aiormq.exceptions.AMQPError, aiormq.exceptions.ChannelInvalidStateError, OSError)
_DELIVERY_COUNT = "x-delivery-count"  # RabbitMQ's header on quorum-queue deliveries
#: Seconds between attempts to subscribe again to a queue the broker cancelled.
RESUBSCRIBE_PAUSE = 1.0


def _gone(exc: BaseException) -> bool:
    """Did a call on a consumer's channel fail because the channel went away? Besides
    the driver's own errors and our time box, aiormq fails what was waiting on a channel
    closed without a reason with the bare ``Exception`` class (``FutureStore.reject_all``):
    an ack queued just before a connection was cut raises exactly that (fault suite)."""
    return isinstance(exc, (*_CHANNEL_GONE, TimeoutError)) or type(exc) is Exception


class AmqpDelivery(Delivery):
    """A delivery settled on the channel that delivered it, or not at all."""

    __slots__ = ("_acks", "_settled", "_tag", "content_type")

    def __init__(
        self,
        message: DeliveredMessage,
        acks: ChannelAcks,
        *,
        task: str,
        queue: str,
        counted: bool,
    ) -> None:
        properties = message.header.properties
        headers = properties.headers or {}
        count = headers.get(_DELIVERY_COUNT)
        if count is None and counted:
            count = 0  # RabbitMQ leaves the header off a quorum queue's first delivery
        deliver = message.delivery
        assert isinstance(deliver, spec.Basic.Deliver)
        super().__init__(
            body=message.body,
            task=task,
            queue=queue,
            routing_key=deliver.routing_key or "",
            redelivered=bool(deliver.redelivered),
            headers=headers,
            correlation_id=properties.correlation_id,
            message_id=properties.message_id,
            delivery_count=count if isinstance(count, int) else None,
            priority=properties.priority or 0,
        )
        self.content_type = properties.content_type
        self._acks = acks
        self._tag: int = deliver.delivery_tag or 0
        self._settled = False
        acks.delivered(self._tag)

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
            if self._acks.channel.is_closed:
                # A tag of a closed channel would mean another message on its successor.
                raise aiormq.exceptions.ChannelInvalidStateError("channel closed")
            # Bounded (ChannelAcks): aiormq queues the frame, then waits for the writer
            # to send it; a connection that dies in between would leave that wait, and
            # the worker's slot, unresolved (seen in the fault suite).
            if requeue:
                await self._acks.requeue(self._tag)
            else:
                await self._acks.ack(self._tag)
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


@dataclass(eq=False)
class _Subscription:
    queue: AbstractQueue
    #: Where the queue is bound (the task exchange), by the task's binding keys.
    exchange: AbstractExchange
    task: str
    #: The consumer tag the broker gave the first ``basic.consume`` ("" until then).
    tag: str
    callback: Callable[[DeliveredMessage], Coroutine[Any, Any, None]]
    #: The driver channel it consumes on now: after a reconnect, not the current one.
    on: AbstractChannel | None = None


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
        self._subscriptions: list[_Subscription] = []
        self._acks: ChannelAcks | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cancelled = False
        self._closed = False
        self._resubscribing = asyncio.Lock()
        self._retrying: asyncio.Task[None] | None = None
        channel.reopen_callbacks.add(self._resubscribe)

    async def subscribe(
        self, queue: AbstractQueue, exchange: AbstractExchange, *, task: str, counted: bool
    ) -> None:
        """``basic.consume`` on ``queue`` (bound to ``exchange``), whose messages run task
        ``task``. ``counted``: a quorum queue, which counts deliveries."""
        callback = self._callback(task, queue.name, counted)
        subscription = _Subscription(queue, exchange, task, "", callback)
        await self._consume(subscription)
        self._subscriptions.append(subscription)

    async def _consume(self, subscription: _Subscription) -> None:
        """``basic.consume`` on the current channel, with the subscription's tag once it
        has one (a reconnect or a cancel by the broker subscribes again under it)."""
        underlay = await self._channel.get_underlay_channel()
        self._acks_of(underlay)
        ok = await underlay.basic_consume(
            subscription.queue.name,
            subscription.callback,
            no_ack=False,
            consumer_tag=subscription.tag or None,
        )
        assert ok.consumer_tag is not None
        subscription.tag = ok.consumer_tag
        subscription.on = underlay

    def _acks_of(self, channel: AbstractChannel) -> ChannelAcks:
        """The acks of ``channel``; a new channel (after a reconnect) gets its own, and
        is watched for the broker cancelling our consumers."""
        acks = self._acks
        if acks is None or acks.channel is not channel:
            acks = self._acks = ChannelAcks(channel, timeout=self._timeout)
            channel.on_consumer_cancel_callbacks.add(self._on_broker_cancel)
            if getattr(self._handler, NONBLOCKING, False):
                deliver_inline(channel)
        return acks

    def _callback(
        self, task: str, queue: str, counted: bool
    ) -> Callable[[DeliveredMessage], Coroutine[Any, Any, None]]:
        async def on_message(message: DeliveredMessage) -> None:
            if self._closed:
                return  # its channel is closing: the broker requeues it
            acks = self._acks_of(message.channel)
            delivery = AmqpDelivery(message, acks, task=task, queue=queue, counted=counted)
            try:
                await self._handler(delivery)
            except Exception:
                # Left unsettled: it goes back to its queue when this consumer closes.
                log.exception(
                    "delivery handler failed", queue=queue, message_id=delivery.message_id
                )

        return on_message

    async def _resubscribe(self, *_: object) -> None:
        """After aio-pika reopened the channel (and declared and bound its queues
        again): consume them again, with the same tags. aio-pika drops its callbacks'
        errors and calls this again only after the next lost connection, so a
        ``basic.consume`` that fails on a connection that stays up (a time-out, a channel
        error) would leave the worker connected and consuming nothing: a task tries again
        every :data:`RESUBSCRIBE_PAUSE` until it works, the connection goes (the next
        reopen calls this again) or the consumer stops. Not retried in here: aio-pika
        holds the channel's restore lock while its callbacks run."""
        if self._cancelled or await self._consume_missing():
            return
        if self._retrying is None or self._retrying.done():
            self._retrying = self._spawn(self._retry_resubscribe())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """``work`` in a task of its own, kept until it ends: :meth:`close` cancels it."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _retry_resubscribe(self) -> None:
        while not self._cancelled:
            await asyncio.sleep(RESUBSCRIBE_PAUSE)
            if self._cancelled or self._channel.is_closed:
                return  # down again: aio-pika's next reopen calls _resubscribe
            if await self._consume_missing():
                return

    async def _consume_missing(self) -> bool:
        """``basic.consume`` each subscription not yet consuming on the current driver
        channel (once per channel: a second ``basic.consume`` of a tag closes it)."""
        async with self._resubscribing:
            try:
                async with asyncio.timeout(self._timeout):
                    underlay = await self._channel.get_underlay_channel()
                    for subscription in self._subscriptions:
                        if subscription.on is not underlay:
                            await self._consume(subscription)
            except Exception as exc:
                log.warning(
                    "could not consume again after a reconnect",
                    error=repr(exc),
                    retry_in=RESUBSCRIBE_PAUSE,
                )
                return False
        log.info("consuming again after a reconnect", queues=self._queue_names)
        return True

    def _on_broker_cancel(self, frame: spec.Basic.Cancel) -> None:
        """The broker cancelled a consumer of ours (its queue was deleted): declare the
        queue again and subscribe again, until that works or this consumer stops."""
        for subscription in self._subscriptions:
            if subscription.tag == frame.consumer_tag and not self._cancelled:
                log.warning("the broker cancelled a consumer", queue=subscription.queue.name)
                self._spawn(self._restore(subscription))

    async def _restore(self, subscription: _Subscription) -> None:
        while not self._cancelled:
            try:
                async with asyncio.timeout(self._timeout):
                    await subscription.queue.declare()
                    await bind_task_queue(
                        subscription.queue, subscription.exchange, subscription.task
                    )
                    await self._consume(subscription)
                log.info("consuming again", queue=subscription.queue.name)
                return
            except Exception as exc:
                log.warning(
                    "could not consume again; retrying",
                    queue=subscription.queue.name,
                    error=repr(exc),
                )
                await asyncio.sleep(RESUBSCRIBE_PAUSE)

    @property
    def _queue_names(self) -> list[str]:
        return [subscription.queue.name for subscription in self._subscriptions]

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
        for subscription in self._subscriptions:
            queue = subscription.queue.name
            if self._channel.is_closed:  # down, or dropped during the previous cancel
                log.info("consumer's connection is down; closing its channel", queue=queue)
                await self._close_channel()
                return
            try:
                async with asyncio.timeout(self._timeout):
                    underlay = await self._channel.get_underlay_channel()
                    await underlay.basic_cancel(subscription.tag)
            except Exception as exc:
                if not _gone(exc):
                    raise
                log.info("consumer already gone", queue=queue, error=repr(exc))

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


def deliver_inline(channel: AbstractChannel) -> None:
    """Run the consumer callbacks of ``channel`` in its reader, not in a task each:
    for a handler marked :func:`~taskq.brokers.base.nonblocking`.

    aiormq starts a task per delivery for the consumer's callback (``create_task``, a
    done callback, a loop turn) for a callback that only wraps the message and puts it
    in the worker's inbox (``put_nowait``: it never waits); measured, ~20 us of the
    worker's 200 a task. Awaited in the reader instead, it is done before the next
    frame is read, so deliveries are handed on in their order. What this leans on of
    aiormq 7 (``Channel._on_deliver_frame``, called by ``_reader`` through the instance,
    and the reading of a message's header and body frames) is exercised by every test
    of a worker on RabbitMQ and by the broker contract's nonblocking test. An error of
    the callback is logged, as aiormq's task would have, and leaves the channel
    reading."""
    read_header = channel._Channel__get_content_header  # type: ignore[attr-defined]
    read_content = channel._read_content  # type: ignore[attr-defined]
    consumers = channel.consumers  # type: ignore[attr-defined]

    async def on_deliver_frame(frame: spec.Basic.Deliver) -> None:
        header = await read_header()
        message = await read_content(frame, header)
        consumer = consumers.get(frame.consumer_tag) if frame.consumer_tag else None
        if consumer is None:
            return
        try:
            await consumer(message)
        except Exception:
            log.exception("delivery callback failed", consumer_tag=frame.consumer_tag)

    channel._on_deliver_frame = on_deliver_frame  # type: ignore[attr-defined]
