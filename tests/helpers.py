"""Small test helpers: waiting for a condition instead of sleeping a fixed time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    until: Callable[[T], bool],
    *,
    timeout: float = 20.0,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until ``until(result)`` holds; fail with the last result after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if until(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        await asyncio.sleep(interval)


def most_in_window(times: Iterable[datetime | float], window: float = 1.0) -> int:
    """The most of ``times`` (datetimes, or seconds) that fall in any one closed window
    of ``window`` seconds: how a rate limit's "at most N per period" is checked."""
    points = sorted(t.timestamp() if isinstance(t, datetime) else t for t in times)
    most = 0
    first = 0
    for last, point in enumerate(points):
        while point - points[first] > window:
            first += 1
        most = max(most, last - first + 1)
    return most
