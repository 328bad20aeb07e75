"""The filtered listing of :class:`~taskq.stores.redis.RedisStore` (see
:mod:`taskq.stores.listing_base`), over its recent-tasks index (``{prefix}:recent``,
scored by each record's last write).

One script call filters a page of the index, newest first, in Redis (reading only each
record's ``name``, ``state`` and times) and answers with the matching ids or the counts
by state; a page is a few milliseconds of Redis's time, so a listing never holds Redis
for long, whatever the index holds. ``since`` also bounds the walk: a record last
written before it cannot have a later step.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import UTC
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskq.status import TaskState, TaskStatus
from taskq.stores.listing_base import TaskFilter, TaskListing
from taskq.stores.redis_records import micros

#: Index entries one script call looks at.
PAGE = 1000

# KEYS[1]: the index. ARGV: lowest score, offset, page size, the record keys' prefix,
# name, state, since (ISO-8601 UTC), text ('' for any), mode ('ids' or 'count'), ids
# wanted. Returns the number of entries looked at, then the matching ids (newest first)
# or a flat list of state, count. ISO-8601 times in UTC compare as strings.
_LIST = """
local low, offset, size, key_prefix, name, state, since, text, mode, wanted = unpack(ARGV)
local ids = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', low, 'LIMIT', offset, size)
local found, counts = {}, {}
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', key_prefix .. id, 'name', 'state', 'finished_at',
                       'started_at', 'created_at')
  local moment = f[3] or f[4] or f[5] or ''
  if f[2] and (name == '' or f[1] == name) and (state == '' or f[2] == state)
     and (since == '' or moment >= since)
     and (text == '' or string.find(id, text, 1, true)
          or string.find(f[1] or '', text, 1, true)) then
    if mode == 'count' then
      counts[f[2]] = (counts[f[2]] or 0) + 1
    else
      found[#found + 1] = id
      if #found >= tonumber(wanted) then break end
    end
  end
end
if mode == 'count' then
  for s, n in pairs(counts) do found[#found + 1] = s; found[#found + 1] = n end
end
return {#ids, found}
"""


class RedisListing(TaskListing):
    """Mixed into :class:`~taskq.stores.redis.RedisStore`, which gives the client, the
    keys, the record decoder and its one error boundary."""

    _listing_script: tuple[Redis, AsyncScript] | None = None

    # Given by RedisStore.
    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    @property
    def _connection(self) -> Any:
        raise NotImplementedError

    @property
    def _index(self) -> str:
        raise NotImplementedError

    def _key(self, task_id: str) -> str:
        raise NotImplementedError

    def _decode(self, task_id: str, fields: dict[str, str]) -> TaskStatus:
        raise NotImplementedError

    def _list_script(self) -> tuple[Redis, AsyncScript]:
        client = cast(Redis, self._connection.client)
        script = self._listing_script
        if script is None or script[0] is not client:
            script = self._listing_script = (client, client.register_script(_LIST))
        return script

    async def _pages(self, where: TaskFilter, mode: str, wanted: int) -> list[list[Any]]:
        """Run the script page after page until the index ends or ``wanted`` ids are
        found; the replies' match lists."""
        client, script = self._list_script()
        since = None if where.since is None else where.since.astimezone(UTC)
        low = "-inf" if since is None else str(micros(since))
        replies: list[list[Any]] = []
        offset, found = 0, 0
        while True:
            args: list[str | int] = [
                low,
                offset,
                PAGE,
                self._key(""),
                where.name or "",
                "" if where.state is None else where.state.value,
                "" if since is None else since.isoformat(),
                where.text or "",
                mode,
                wanted - found,
            ]
            looked_at, matched = await script(keys=[self._index], args=args, client=client)
            replies.append(matched)
            found += len(matched)
            if looked_at < PAGE or (mode == "ids" and found >= wanted):
                return replies
            offset += looked_at

    async def find_tasks(self, where: TaskFilter, *, limit: int = 50) -> list[TaskStatus]:
        if limit <= 0:
            return []
        with self._errors():
            ids = [task_id for page in await self._pages(where, "ids", limit) for task_id in page]
            async with self._connection.client.pipeline(transaction=False) as pipe:
                for task_id in ids:
                    pipe.hgetall(self._key(task_id))
                records = cast(list[dict[str, str]], await pipe.execute())
        # A record may expire between the two round trips: skipped.
        return [
            self._decode(task_id, fields)
            for task_id, fields in zip(ids, records, strict=True)
            if fields
        ][:limit]

    async def count_tasks(self, where: TaskFilter) -> dict[TaskState, int]:
        counts = dict.fromkeys(TaskState, 0)
        with self._errors():
            pages = await self._pages(where, "count", 0)
        for page in pages:
            for state, count in zip(page[::2], page[1::2], strict=True):
                if state in TaskState._value2member_map_:
                    counts[TaskState(state)] += int(count)
        return counts
