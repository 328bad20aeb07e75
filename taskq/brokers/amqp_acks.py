"""Settling deliveries on one AMQP channel with as few frames as possible.

A worker acks each message after its outcome is recorded; at thousands of messages a
second one ``basic.ack`` frame each is a good part of the client's CPU. Acks asked for
in one turn of the event loop are sent together: every one below the channel's
lowest still-unsettled delivery tag in ONE ``basic.ack(multiple=True)`` (that acks
every delivery up to its tag, so it may only cover deliveries already asked to be
acked), the others one by one. Nothing waits for a slower task to finish: an ack is
never held back beyond the turn of the loop it was asked in.

A requeue (``basic.nack``) is sent at once, and its tag counts as unsettled until
its frame is written: a ``multiple`` ack computed meanwhile stops below it, so it can
never ack a message that is being given back.

Delivery tags belong to one channel: after a reconnect the consumer makes a new
:class:`ChannelAcks` for the new channel, and settling a delivery of the old one fails
as "channel gone" (the broker has already requeued it).
"""

from __future__ import annotations

import asyncio

from aiormq.abc import AbstractChannel


class ChannelAcks:
    """The unsettled deliveries of one aiormq channel and the acks waiting to be sent."""

    def __init__(self, channel: AbstractChannel, *, timeout: float) -> None:
        self.channel = channel
        self._timeout = timeout
        #: Delivered and neither acked nor asked to be acked (requeues in flight too).
        self._unsettled: set[int] = set()
        #: Acks asked for and not sent yet, each with its caller's future.
        self._asked: dict[int, asyncio.Future[None]] = {}
        self._flushing: asyncio.Task[None] | None = None
        #: Frames sent, for tests and the bench: (multiple acks, single acks).
        self.sent = [0, 0]

    def delivered(self, tag: int) -> None:
        self._unsettled.add(tag)

    async def ack(self, tag: int) -> None:
        """Return once the ack covering ``tag`` is written; raise what writing it raised."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._unsettled.discard(tag)
        self._asked[tag] = written
        if self._flushing is None:
            self._flushing = loop.create_task(self._flush())
        await written

    async def requeue(self, tag: int) -> None:
        async with asyncio.timeout(self._timeout):
            await self.channel.basic_nack(tag, multiple=False, requeue=True)
        # Only once written: if it failed, the tag stays unsettled for good, so that no
        # `multiple` ack on this channel can ever cover the message.
        self._unsettled.discard(tag)

    async def _flush(self) -> None:
        try:
            while self._asked:
                asked, self._asked = self._asked, {}
                try:
                    await self._send(sorted(asked))
                except BaseException as exc:
                    for written in asked.values():
                        if not written.done():
                            written.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                else:
                    for written in asked.values():
                        if not written.done():
                            written.set_result(None)
        finally:
            self._flushing = None

    async def _send(self, tags: list[int]) -> None:
        lowest_open = min(self._unsettled, default=None)
        covered = [t for t in tags if lowest_open is None or t < lowest_open]
        # One frame for all those below every open delivery, then one for each other.
        frames = [(covered[-1], len(covered) > 1)] if covered else []
        frames += [(tag, False) for tag in tags[len(covered) :]]
        async with asyncio.timeout(self._timeout):
            for i, (tag, multiple) in enumerate(frames, 1):
                # Queued in order; only the last one waits for the writer.
                await self.channel.basic_ack(tag, multiple=multiple, wait=i == len(frames))
                self.sent[0 if multiple else 1] += 1
