"""Calls asked for in one turn of the event loop, run together as one batch.

Two hundred ``delay()`` calls awaited together each write one ``queued`` record and
publish one message. One by one, each pays a store round trip of its own and its own
time box, channel check and confirm wait: profiled for issue 5, that per-call cost was
most of the sender's CPU. A :class:`Coalescer` gathers the calls made in one turn of the
loop (per key: a queue and delay, say) and makes one batch call of them, a Redis
pipeline or a window of publishes; each caller still gets its own item's answer.

Batches are not held back for one another: each turn's batch starts at once, with the
earlier ones still out, so nothing waits for a flush to come back. A caller alone in
its turn costs one loop turn more, and runs ``one`` (a plain call) when given: a batch
of one is dearer than the plain call (a Redis pipeline of one: +50 us of CPU).
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
    ) -> None:
        self._many = many
        self._one = one
        self._pending: dict[K, list[tuple[T, asyncio.Future[R]]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Batches on their way, referenced so they are not garbage collected.
        self._running: set[asyncio.Task[None]] = set()

    async def __call__(self, key: K, item: T) -> R:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new loop (tests run one each): nothing carries over
            self._loop, self._pending = loop, {}
        answer: asyncio.Future[R] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._start)  # after every call already ready in this turn
        self._pending.setdefault(key, []).append((item, answer))
        return await answer

    def _start(self) -> None:
        pending, self._pending = self._pending, {}
        if self._loop is None:  # pragma: no cover - set before any call_soon
            return
        for key, asked in pending.items():
            task = self._loop.create_task(self._run(key, asked))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

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
