"""The schedule records of :class:`~taskq.stores.redis.RedisStore` (see
:mod:`taskq.stores.schedule_base`).

One HASH, ``{prefix}:schedules``: field = schedule name, value = its last tick sent,
``YYYY-MM-DDTHH:MM:SSZ`` (UTC). That fixed width makes ticks compare as strings, which
is how the script moves a tick forward only. No expiry.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskq.errors import StoreError
from taskq.schedules.schedule import format_tick, parse_tick
from taskq.stores.schedule_base import ScheduleRecords

# KEYS[1]: the hash. ARGV: schedule name, tick. Written only if later than the one kept.
_RECORD = """
local known = redis.call('HGET', KEYS[1], ARGV[1])
if known and known >= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 1
"""


class RedisSchedules(ScheduleRecords):
    """Mixed into :class:`~taskq.stores.redis.RedisStore`, which gives ``prefix``, its
    client and its one error boundary."""

    prefix: str
    _schedule_script: tuple[Redis, AsyncScript] | None = None

    # Given by RedisStore (which comes first in the method resolution order).
    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @property
    def _connection(self) -> Any:
        raise NotImplementedError

    @property
    def _schedules_key(self) -> str:
        return f"{self.prefix}:schedules"

    async def last_tick(self, schedule: str) -> datetime | None:
        client = cast(Redis, self._connection.client)
        with self._errors():
            value = await client.hget(self._schedules_key, schedule)
        if value is None:
            return None
        try:
            return parse_tick(cast(str, value))
        except ValueError as exc:
            raise StoreError(f"unreadable last tick of schedule {schedule!r}: {exc}") from exc

    async def record_tick(self, schedule: str, tick: datetime) -> bool:
        client = cast(Redis, self._connection.client)
        script = self._schedule_script
        if script is None or script[0] is not client:
            script = self._schedule_script = (client, client.register_script(_RECORD))
        with self._errors():
            written = await script[1](
                keys=[self._schedules_key], args=[schedule, format_tick(tick)]
            )
        return bool(written)
