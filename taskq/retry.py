"""What happens after an attempt fails: retry later, or fail for good.

A task's :class:`RetryPolicy` is fixed at registration (``@app.task(max_retries=...)``).
A task steers it from inside by raising :class:`Retry` (again, maybe after a delay of
its choosing) or :class:`Reject` (fail now, no retry).

Retries wait in the broker's delay queues, never in a worker: the failed message is
republished with a delay, then acked (see ``execution.py``).

Every start of a task counts as an attempt, including one that a worker crash cut
short (the store counts starts, the broker redelivers). So a task is started at most
``max_retries + 1`` times: a message that kills its worker every time (a poison
message) fails after that many deliveries, instead of crash-looping every worker.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from taskq.errors import ConfigurationError, TaskqError


class Retry(TaskqError):
    """Raise inside a task to ask for another attempt, after ``delay`` seconds (the
    policy's backoff when ``None``). Counts against ``max_retries``: once they are
    spent the task fails with this as its error."""

    def __init__(self, delay: float | None = None, reason: str = "") -> None:
        if delay is not None and not (math.isfinite(delay) and delay >= 0):
            raise ConfigurationError(f"Retry(delay=...) takes seconds >= 0, not {delay!r}")
        super().__init__(reason or "retry requested")
        self.delay = delay
        self.reason = reason


class Reject(TaskqError):
    """Raise inside a task to fail it at once, with ``reason``: no retry, whatever the
    policy. For input that will never work (a deleted user, a refused card)."""

    def __init__(self, reason: str = "rejected") -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RetryPolicy:
    """When and how soon a failed attempt is tried again.

    Backoff doubles from ``backoff`` seconds (1, 2, 4 ...) up to ``backoff_max``; with
    ``jitter`` the delay is drawn from 0 to that value ("full jitter"), so tasks that
    failed together (a database restart) do not all come back in the same second.
    """

    max_retries: int = 3
    backoff: float = 1.0
    backoff_max: float = 300.0
    jitter: bool = True
    retry_on: tuple[type[BaseException], ...] = (Exception,)

    def __post_init__(self) -> None:
        if isinstance(self.max_retries, bool) or not isinstance(self.max_retries, int):
            raise ConfigurationError(f"max_retries must be an int, not {self.max_retries!r}")
        if self.max_retries < 0:
            raise ConfigurationError("max_retries must be 0 or more")
        for what, value in (
            ("retry_backoff", self.backoff),
            ("retry_backoff_max", self.backoff_max),
        ):
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ConfigurationError(f"{what} must be a number of seconds >= 0, not {value!r}")
        if self.backoff_max < self.backoff:
            raise ConfigurationError("retry_backoff_max must be at least retry_backoff")
        bad = [
            c for c in self.retry_on if not (isinstance(c, type) and issubclass(c, BaseException))
        ]
        if bad:
            raise ConfigurationError(f"retry_on takes exception classes, not {bad!r}")

    @classmethod
    def build(
        cls,
        *,
        max_retries: int,
        retry_backoff: float,
        retry_backoff_max: float,
        retry_jitter: bool,
        retry_on: type[BaseException] | Sequence[type[BaseException]],
    ) -> RetryPolicy:
        """From the decorator's keyword arguments (``retry_on`` may be one class)."""
        classes = (retry_on,) if isinstance(retry_on, type) else tuple(retry_on)
        return cls(max_retries, retry_backoff, retry_backoff_max, bool(retry_jitter), classes)

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    def backoff_for(self, retry: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first)."""
        ceiling = min(self.backoff_max, self.backoff * 2.0 ** min(retry - 1, 64))
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0.0, ceiling)

    def decide(self, exc: BaseException, attempts: int) -> float | None:
        """The delay before the next attempt, or ``None`` to fail now. ``attempts``:
        starts so far, this one included."""
        if isinstance(exc, Reject) or attempts >= self.max_attempts:
            return None
        if isinstance(exc, Retry):
            return exc.delay if exc.delay is not None else self.backoff_for(attempts)
        if isinstance(exc, self.retry_on):
            return self.backoff_for(attempts)
        return None
