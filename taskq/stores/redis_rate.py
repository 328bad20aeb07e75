"""The rate limit schedules of :class:`~taskq.stores.redis.RedisStore` (see
:mod:`taskq.stores.rate_base`).

Key ``{prefix}:rate:{task name}``: a HASH, fields ``next`` (the next free slot) and
``line`` (the end of the line of calls told to come back), in microseconds on the Redis
server's clock (``TIME``); it expires once both times have passed (a missing key and
past times mean the same: start now). One Lua script reads and moves them, so workers
on any number of hosts take starts from one schedule, whatever their own clocks say.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskq.ratelimit import RateLimit
from taskq.stores.rate_base import StartLimits

# KEYS[1]: the schedule. ARGV: spacing and max wait, in µs. Returns the wait in µs: 0 or
# positive when a slot was taken (`next` moved on by the spacing), negative when none
# was: come back then (`line` moved on by the spacing). The key expires when both times
# have passed. Numbers are written with %.0f: Lua 5.1 prints numbers this large with 14
# digits otherwise.
_TAKE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local spacing, max_wait = tonumber(ARGV[1]), tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'next', 'line')
local next_free, line = tonumber(saved[1]) or now, tonumber(saved[2]) or now
local start = math.max(next_free, now)
local wait
if start - now <= max_wait then
  next_free = start + spacing
  wait = start - now
else
  local back = math.max(line, start)
  line = back + spacing
  wait = now - back
end
redis.call('HSET', KEYS[1], 'next', string.format('%.0f', next_free),
           'line', string.format('%.0f', line))
local last = math.max(next_free, line)
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.ceil((last - now) / 1000) + 1))
return wait
"""


class RedisStartLimits(StartLimits):
    """Mixed into :class:`~taskq.stores.redis.RedisStore`, which gives ``prefix``, its
    client and its one error boundary."""

    prefix: str
    _rate_script: tuple[Redis, AsyncScript] | None = None

    # Given by RedisStore (which comes first in the method resolution order).
    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @property
    def _connection(self) -> Any:
        raise NotImplementedError

    def _take_script(self) -> AsyncScript:
        """Registered on the current client (no round trip: redis-py sends EVALSHA and
        loads the script the first time the server does not know it)."""
        client = cast(Redis, self._connection.client)
        registered = self._rate_script
        if registered is None or registered[0] is not client:
            registered = self._rate_script = (client, client.register_script(_TAKE))
        return registered[1]

    def rate_key(self, key: str) -> str:
        """The Redis key of task ``key``'s schedule."""
        return f"{self.prefix}:rate:{key}"

    async def take_start(self, key: str, limit: RateLimit, *, max_wait: float = 0.0) -> float:
        take = self._take_script()
        args = [_micros(limit.spacing), _micros(max(0.0, max_wait))]
        with self._errors():
            wait = await take(keys=[self.rate_key(key)], args=args)
        return int(wait) / 1_000_000


def _micros(seconds: float) -> int:
    return max(0, math.ceil(seconds * 1_000_000))
