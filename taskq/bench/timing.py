"""Running many awaitable calls at a fixed number in flight, and timing them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


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


def per_second(count: int, seconds: float) -> float:
    """A rate, rounded to what a benchmark can tell apart."""
    return round(count / seconds, 1) if seconds > 0 else 0.0
