"""Running many awaitable calls at a fixed number in flight, and timing them."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from taskq.loops import raise_if_cancel_requested

T = TypeVar("T")


async def pipelined(count: int, in_flight: int, call: Callable[[int], Awaitable[object]]) -> float:
    """Await ``call(0) .. call(count - 1)`` with up to ``in_flight`` of them pending at
    once; return the seconds it took.

    ``in_flight`` lanes each take the next index as soon as their call returns: a
    sliding window, so one slow confirm holds one lane, not a whole batch (as
    ``gather`` over fixed windows would), and no ``count`` coroutines exist up front.
    """
    next_index = 0

    async def lane() -> None:
        nonlocal next_index
        while next_index < count:
            index = next_index
            next_index += 1
            await call(index)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(in_flight, count))))
    return time.perf_counter() - started


async def paced(count: int, rate: float, call: Callable[[int], Awaitable[T]]) -> list[T]:
    """Start ``call(0) .. call(count - 1)`` at ``rate`` a second, each on its schedule
    whatever the earlier ones do (a light, steady load, as the latency phases want);
    their results, in order."""
    calls: list[asyncio.Future[T]] = []
    begin = time.monotonic()
    for index in range(count):
        await asyncio.sleep(max(0.0, begin + index / rate - time.monotonic()))
        raise_if_cancel_requested()
        calls.append(asyncio.ensure_future(call(index)))
    return list(await asyncio.gather(*calls))


def per_second(count: int, seconds: float) -> float:
    """A rate, rounded to what a benchmark can tell apart."""
    return round(count / seconds, 1) if seconds > 0 else 0.0


def p50_ms(seconds: list[float]) -> float | None:
    """The median of ``seconds``, in milliseconds to the microsecond."""
    return round(statistics.median(seconds) * 1000, 3) if seconds else None
