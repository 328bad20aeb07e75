"""The store half of global rate limits (:mod:`taskq.ratelimit`): one schedule of
starts per limited task, shared by every worker process on every host that uses the
store. Memory: :mod:`taskq.stores.memory_rate`; Redis: :mod:`taskq.stores.redis_rate`;
one contract suite (``tests/contract/test_store_rate_contract.py``).

The schedule is a GCRA (generic cell rate algorithm) without burst: the store keeps,
per task, the earliest time the next start may happen (its "theoretical arrival
time"). Taking a start moves that time on by :attr:`~taskq.ratelimit.RateLimit.spacing`.
One number per task, one atomic read-and-write per start, no token refill to compute
and no list of past starts to trim: why GCRA rather than a token bucket or a log.

Beside it, a second number: the end of the *line* of calls told to come back later.
Each refusal tells its caller to come back at the end of the line and moves the end on
by one spacing, so a backlog of N waiting calls comes back spread over N spacings, at
about the limit's pace, instead of all at once to be refused again (which would send
the whole backlog round the broker's delay queues every few seconds). The line holds
no slot: a call that finds a free slot takes it whatever the line says, so a line
whose calls have gone (cancelled, lost) delays nobody once the slots are free again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from taskq.ratelimit import RateLimit


class StartLimits(ABC):
    """The rate limit operation of a :class:`~taskq.stores.base.StatusStore`."""

    @abstractmethod
    async def take_start(self, key: str, limit: RateLimit, *, max_wait: float = 0.0) -> float:
        """Ask for a start of the task named ``key`` under ``limit``, atomically:

        - ``0.0``: start now; the slot is taken.
        - positive: the slot that many seconds from now is taken (only ever when it is
          at most ``max_wait`` away): start then, without asking again.
        - negative: no slot taken (the next free one is further than ``max_wait``):
          come back and ask again in that many seconds, which is the next free slot,
          or, when others were told to come back already, one spacing after the last
          of them (see the module).

        Slots are :attr:`~taskq.ratelimit.RateLimit.spacing` apart and measured on the
        store's clock (Redis: its ``TIME``), so hosts whose clocks disagree still share
        one schedule. A slot taken and not used (the worker stopped, the task was
        cancelled) is lost: a limit can only be undershot, never exceeded."""
