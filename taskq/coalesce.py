"""Calls asked for in one turn of the event loop, run together as one batch.

Two hundred ``delay()`` calls awaited together each write one ``queued`` record and
publish one message. One by one, each pays a store round trip of its own and its own
time box, channel check and confirm wait: profiled for issue 5, that per-call cost was
most of the sender's CPU. A :class:`Coalescer` gathers the calls made in one turn of the
loop (per key: a queue and delay, say) and makes one batch call of them, a Redis
pipeline or a window of publishes; each caller still gets its own item's answer.

By default batches are not held back for one another: each turn's batch starts at
once, with the earlier ones still out, so nothing waits for a flush to come back (the
sender's way). With ``in_flight=n`` at most n batches run at once and the calls asked
for meanwhile wait and go together in the next (the worker's status writes: the busier
Redis is, the bigger and fewer the pipelines). A caller alone in its turn costs one
loop turn more, and runs ``one`` (a plain call) when given: a batch of one is dearer
than the plain call (a Redis pipeline of one: +50 us of CPU).

``eager=True`` (the sender's coalescers) spares that loop turn to a caller alone: a
call made while no batch is pending or running runs at once, in its caller's own task
(no batch task, no future, no turn of the loop: one ``delay()`` after the other, what a
web view does, waits for nothing but its round trips). The calls made while it runs
batch as usual, so a burst of concurrent calls costs one lone call more than it did.
Cancelling an eager caller cancels its call (its item is in no batch of others).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[K, T, R]):
    """``await coalescer(key, item)``: the answer of ``many(key, items)`` for ``item``,
    ``items`` being every item asked for with ``key`` in the same turn of the loop.

    ``many`` returns one answer per item, in order; if it raises, every caller of its
    batch gets that error. A caller cancelled meanwhile leaves its item in the batch.
    """

    def __init__(
        self,
        many: Callable[[K, list[T]], Awaitable[list[R]]],
        one: Callable[[K, T], Awaitable[R]] | None = None,
        *,
        in_flight: int | None = None,
        eager: bool = False,
    ) -> None:
        self._many = many
        self._one = one
        self._in_flight = in_flight
        self._eager = eager
        #: Eager calls running now, in their callers' tasks.
        self._direct = 0
        self._pending: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Batches on their way, referenced so they are not garbage collected.
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, key: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run one each): nothing carries over
            self._loop, self._pending, self._running = loop, {}, set()
            self._scheduled = False
            self._direct = 0
        if self._eager and not self._pending and not self._running and not self._direct:
            return await self._call_now(key, item)
        answer: asyncio.Future[R] = loop.create_future()
        self._pending.setdefault(key, []).append((item, answer))
        self._schedule()
        return await answer

    async def _call_now(self, key: K, item: T) -> R:
        self._direct += 1
        try:
            if self._one is not None:
                return await self._one(key, item)
            (answer,) = await self._many(key, [item])
            return answer
        finally:
            self._direct -= 1

    def _schedule(self) -> None:
        """Start the pending calls' batches on the next turn, if a batch may start."""
        if self._scheduled or not self._pending or self._loop is None:
            return
        if self._in_flight is not None and len(self._running) >= self._in_flight:
            return  # a batch that ends schedules them
        self._scheduled = True
        self._loop.call_soon(self._start)  # after every call already ready in this turn

    def _start(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, {}
        if self._loop is None:  # pragma: no cover - set before any call_soon
            return
        for key, asked in pending.items():
            task = self._loop.create_task(self._run(key, asked))
            self._running.add(task)
            task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._schedule()

    async def _run(self, key: K, asked: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            if self._one is not None and len(asked) == 1:
                answers = [await self._one(key, asked[0][0])]
            else:
                answers = await self._many(key, [item for item, _ in asked])
        except Exception as exc:
            for _, answer in asked:
                if not answer.done():
                    answer.set_exception(exc)
            return
        except BaseException:
            for _, answer in asked:
                answer.cancel()
            raise
        for (_, answer), result in zip(asked, answers, strict=True):
            if not answer.done():  # its caller may have been cancelled meanwhile
                answer.set_result(result)
