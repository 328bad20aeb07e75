"""The status store on Redis: one HASH per task, changed only by Lua scripts.

Key ``{prefix}:task:{task_id}``, fields ``state``, ``name``, ``attempts``,
``created_at``, ``started_at``, ``finished_at`` (ISO-8601), ``result`` (JSON) and
``error`` (JSON of :class:`~taskq.status.ErrorInfo``): plain enough for a reader in
another language. Each write is one script call, so checking the current state and
writing the new one is atomic across any number of processes.

Key ``{prefix}:recent``, a sorted set of task ids scored by the time of their last
write (microseconds since the epoch), is the index behind :meth:`RedisStore.recent`.
The same script call that writes a record indexes it, so listing costs a write no
extra round trip; the script also drops the entries of records past their ttl and
keeps at most :data:`RECENT_INDEX_SIZE`, so the index stays bounded. The scripts carry the
transition table generated from :data:`taskq.status.TRANSITIONS`, never a copy by hand.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import structlog
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from taskq.errors import ConfigurationError, StoreError
from taskq.message import to_json
from taskq.status import CANCELLABLE, TRANSITIONS, ErrorInfo, TaskState, TaskStatus, utcnow
from taskq.stores.base import DEFAULT_TTL, NO_RESULT, StatusStore, Write
from taskq.stores.redis_packing import use_hiredis_packing
from taskq.stores.redis_workflows import RedisWorkflows
from taskq.urls import key_is_encrypted, mask_url, scrub, tls_options

#: Connections per store (per process); more writers than this wait their turn.
MAX_CONNECTIONS = 32
#: Seconds a Redis call may take (connect, answer, or wait for a free connection)
#: before it fails with StoreError: a stalled or half-open Redis must not hang every
#: publish and every worker. ``socket_timeout=`` / ``socket_connect_timeout=`` in the
#: URL override it.
OPERATION_TIMEOUT = 10.0
#: Entries the recent-tasks index keeps (about 100 bytes each): ``recent()`` looks no
#: further back than this many written tasks.
RECENT_INDEX_SIZE = 100_000
# Index entries one _RECENT call looks at: a few milliseconds of Redis's time.
_RECENT_PAGE = 1000

log = structlog.get_logger(__name__)


def _lua_string(text: str) -> str:
    # A JSON string literal of plain ASCII is a valid Lua string literal.
    return json.dumps(text, ensure_ascii=True)


def _lua_set(states: Iterable[TaskState]) -> str:
    return "{" + ", ".join(f"[{_lua_string(s.value)}] = true" for s in sorted(states)) + "}"


def _lua_transitions() -> str:
    """``TRANSITIONS`` as a Lua table; ``''`` stands for "no record yet"."""
    rows = (
        f"[{_lua_string('' if current is None else current.value)}] = {_lua_set(allowed)}"
        for current, allowed in TRANSITIONS.items()
    )
    return "{" + ", ".join(rows) + "}"


# Indexes a record just written. KEYS[2]: the index; the last four ARGV: task id, score
# (now in µs since the epoch), the score below which records have expired ('' when they
# never do), entries to keep. Scores are computed in Python: Lua 5.1 prints numbers
# this large with 14 digits.
_INDEX = """
local function index(idx, id, score, expired_before, keep)
  redis.call('ZADD', idx, score, id)
  if expired_before ~= '' then
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. expired_before)
  end
  redis.call('ZREMRANGEBYRANK', idx, 0, -tonumber(keep) - 1)
end
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: target state, task name, now
# (ISO-8601), ttl in ms ('' for none), '1' to write only if there is no record
# (create), result JSON and error JSON ('' for "leave as it is"), then _INDEX's four.
# Returns the record after the write (HGETALL), or false when the move is refused and
# nothing was written.
_WRITE = f"""{_INDEX}
local ALLOWED = {_lua_transitions()}
local FINAL = {_lua_set(s for s in TaskState if s.finished)}
local key = KEYS[1]
local to, name, now, ttl, only_new, result, err = unpack(ARGV, 1, 7)
local current = redis.call('HGET', key, 'state') or ''
if only_new == '1' and current ~= '' then return false end
local allowed = ALLOWED[current]
if not allowed or not allowed[to] then return false end
if current == '' then
  redis.call('HSET', key, 'name', name, 'attempts', 0, 'created_at', now)
end
if current == {_lua_string(TaskState.STARTED)} and
   (to == {_lua_string(TaskState.STARTED)} or to == {_lua_string(TaskState.RETRYING)}) and
   redis.call('HEXISTS', key, 'cancel_requested') == 1 then
  to = {_lua_string(TaskState.CANCELLED)}
end
if to ~= {_lua_string(TaskState.STARTED)} then redis.call('HDEL', key, 'cancel_requested') end
redis.call('HSET', key, 'state', to)
if to == {_lua_string(TaskState.STARTED)} then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'started_at', now)
end
if result ~= '' then redis.call('HSET', key, 'result', result) end
if to == {_lua_string(TaskState.SUCCEEDED)} then
  redis.call('HDEL', key, 'error')
elseif err ~= '' then
  redis.call('HSET', key, 'error', err)
end
if FINAL[to] then redis.call('HSET', key, 'finished_at', now) end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 8, 11))
return redis.call('HGETALL', key)
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: now (ISO-8601), ttl in ms ('' for
# none), then _INDEX's four. StatusStore.cancel: queued / retrying -> cancelled, started
# -> marked cancel_requested, anything else unchanged. Returns the record (HGETALL), or
# false when there is none.
_CANCEL = f"""{_INDEX}
local key = KEYS[1]
local now, ttl = unpack(ARGV, 1, 2)
local current = redis.call('HGET', key, 'state')
if not current then return false end
local CANCELLABLE = {_lua_set(CANCELLABLE)}
if CANCELLABLE[current] then
  redis.call('HSET', key, 'state', {_lua_string(TaskState.CANCELLED)}, 'finished_at', now)
elseif current == {_lua_string(TaskState.STARTED)} then
  redis.call('HSET', key, 'cancel_requested', 1)
else
  return redis.call('HGETALL', key)
end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 3, 6))
return redis.call('HGETALL', key)
"""

# KEYS[1]: the record, KEYS[2]: the index; ARGV[1]: the task id. Deletes the record
# (and its index entry) only while queued with no attempt; returns 1 if it did.
_DISCARD = f"""
local key = KEYS[1]
local fields = redis.call('HMGET', key, 'state', 'attempts')
if fields[1] == {_lua_string(TaskState.QUEUED)} and (tonumber(fields[2]) or 0) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return redis.call('DEL', key)
end
return 0
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: task name, now (ISO-8601), ttl in ms
# ('' for none), then _INDEX's four. An operator's reset, not a move: whatever the
# state, the record becomes a fresh `queued` one (created_at kept). Returns the record
# (HGETALL).
_RESET = f"""{_INDEX}
local key = KEYS[1]
local name, now, ttl = unpack(ARGV, 1, 3)
local created = redis.call('HGET', key, 'created_at') or now
redis.call('DEL', key)
redis.call('HSET', key, 'state', {_lua_string(TaskState.QUEUED)}, 'name', name,
           'attempts', 0, 'created_at', created)
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 4, 7))
return redis.call('HGETALL', key)
"""

# KEYS[1]: the index. ARGV: first and last rank to look at (newest first), the record
# keys' prefix, task name and state wanted ('' for any), matches wanted. Returns the
# number of entries looked at and the matching task ids, newest first. Filtering here,
# not in Python, reads a page in one round trip and sends back only the matches. It
# reads records it cannot name in KEYS: fine on one Redis, as taskq's keys are.
_RECENT = """
local first, last, key_prefix, name, state, wanted = unpack(ARGV)
local ids = redis.call('ZREVRANGE', KEYS[1], first, last)
local found = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HMGET', key_prefix .. id, 'name', 'state')
  if fields[2] and (name == '' or fields[1] == name) and (state == '' or fields[2] == state) then
    found[#found + 1] = id
    if #found >= tonumber(wanted) then break end
  end
end
return {#ids, found}
"""


@dataclass(frozen=True)
class _Connection:
    client: Redis
    write: AsyncScript
    discard: AsyncScript
    reset: AsyncScript
    recent: AsyncScript
    cancel: AsyncScript


class RedisStore(RedisWorkflows, StatusStore):
    """Task records in Redis (``redis://`` or ``rediss://``), shared by every process
    that points at the same server and ``prefix``."""

    def __init__(self, url: str, *, ttl: float | None = DEFAULT_TTL, prefix: str = "taskq") -> None:
        super().__init__(ttl=ttl)
        self.display_url = mask_url(url)
        self.prefix = prefix
        self._url = url
        # redis-py's own TLS options (rediss://host/0?ssl_ca_certs=...&ssl_certfile=...
        # &ssl_keyfile=...&ssl_password=...), checked here rather than at the first connect.
        given = tls_options(
            url,
            what="Redis",
            tls_scheme="rediss",
            is_tls=lambda name: name.startswith("ssl_"),
            files=("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"),
        )
        key = given.get("ssl_keyfile") or given.get("ssl_certfile")
        if key is not None and "ssl_password" not in given and key_is_encrypted(key):
            raise ConfigurationError(
                f"the Redis URL's key file {key} is encrypted: give its passphrase as "
                "ssl_password= in the URL (it is masked wherever the URL is shown)"
            )
        # Made in connect(), so that its connections belong to the loop that uses them.
        self._conn: _Connection | None = None

    async def connect(self) -> None:
        if self._conn is not None:
            return
        try:
            # A blocking pool: a burst of concurrent writes (thousands of tasks finishing
            # at once) waits for a free connection instead of failing with "Too many
            # connections", which the default pool raises at once. from_url keeps the
            # URL's query options (TLS among them) for every connection it makes.
            pool = BlockingConnectionPool.from_url(
                self._url,
                decode_responses=True,
                max_connections=MAX_CONNECTIONS,
                timeout=OPERATION_TIMEOUT,
                socket_timeout=OPERATION_TIMEOUT,
                socket_connect_timeout=OPERATION_TIMEOUT,
            )
            use_hiredis_packing(pool)
            client = Redis.from_pool(pool)  # closing the client closes the pool
        except ValueError as exc:
            raise ConfigurationError(
                f"invalid store URL {self.display_url!r}: {self._scrub(str(exc))}"
            ) from exc
        try:
            with self._errors():
                await client.ping()
        except BaseException:
            await client.aclose()
            raise
        if self._conn is not None:  # a concurrent connect() won the race; keep its client
            await client.aclose()
            return
        write, discard, reset, recent, cancel = (
            client.register_script(s) for s in (_WRITE, _DISCARD, _RESET, _RECENT, _CANCEL)
        )
        self._conn = _Connection(client, write, discard, reset, recent, cancel)
        log.debug("store connected", store=self.display_url)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with self._errors():
                await conn.client.aclose()
            log.debug("store closed", store=self.display_url)

    async def get(self, task_id: str) -> TaskStatus | None:
        with self._errors():
            # decode_responses=True: keys and values come back as str.
            fields = cast(dict[str, str], await self._connection.client.hgetall(self._key(task_id)))
        return self._decode(task_id, fields) if fields else None

    async def discard(self, task_id: str) -> bool:
        with self._errors():
            return bool(await self._connection.discard(keys=self._keys(task_id), args=[task_id]))

    async def cancel(self, task_id: str) -> TaskStatus | None:
        now = utcnow()
        args = [now.isoformat(), self._ttl_ms(), *self._index_args(task_id, now)]
        with self._errors():
            reply = await self._connection.cancel(keys=self._keys(task_id), args=args)
        return self._written(task_id, reply)

    async def refuse_cancel(self, task_id: str) -> bool:
        with self._errors():
            return bool(await self._connection.client.hdel(self._key(task_id), "cancel_requested"))

    async def reset(self, task_id: str, name: str) -> TaskStatus:
        now = utcnow()
        args = [name, now.isoformat(), self._ttl_ms(), *self._index_args(task_id, now)]
        with self._errors():
            reply = await self._connection.reset(keys=self._keys(task_id), args=args)
        return self._decode(task_id, dict(zip(reply[::2], reply[1::2], strict=True)))

    async def recent(
        self, *, name: str | None = None, state: TaskState | None = None, limit: int = 20
    ) -> list[TaskStatus]:
        """Walks the index newest first, a page at a time: one script call filters a
        page, one pipelined round trip reads the records it matched. An entry whose
        record has expired is skipped (the next write drops it)."""
        found: list[TaskStatus] = []
        conn = self._connection
        start = 0
        with self._errors():
            while len(found) < limit:
                args: list[str | int] = [
                    start,
                    start + _RECENT_PAGE - 1,
                    self._key(""),
                    name or "",
                    "" if state is None else state.value,
                    limit - len(found),
                ]
                looked_at, wanted = await conn.recent(keys=[self._index], args=args)
                async with conn.client.pipeline(transaction=False) as pipe:
                    for task_id in wanted:
                        pipe.hgetall(self._key(task_id))
                    records = cast(list[dict[str, str]], await pipe.execute())
                # A record may expire between the two round trips: skipped as well.
                found.extend(
                    self._decode(task_id, fields)
                    for task_id, fields in zip(wanted, records, strict=True)
                    if fields
                )
                if looked_at < _RECENT_PAGE:
                    break
                start += looked_at
        return found

    async def _write(
        self,
        task_id: str,
        name: str,
        state: TaskState,
        *,
        only_if_absent: bool = False,
        result: Any = NO_RESULT,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        write = Write(task_id, name, state, only_if_absent, result, error)
        args = self._write_args(write, utcnow())
        with self._errors():
            reply = await self._connection.write(keys=self._keys(task_id), args=args)
        return self._written(task_id, reply)

    async def write_many(self, writes: Sequence[Write]) -> list[TaskStatus | None]:
        """One pipeline (no MULTI: each script is atomic on its own), one round trip."""
        if not writes:
            return []
        now = utcnow()
        # Encoded before anything is sent: a result JSON cannot carry fails the call.
        calls = [(self._keys(w.task_id), self._write_args(w, now)) for w in writes]
        conn = self._connection
        with self._errors():
            async with conn.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await conn.write(keys=keys, args=args, client=pipe)
                replies = await pipe.execute()
        return [self._written(w.task_id, reply) for w, reply in zip(writes, replies, strict=True)]

    def _write_args(self, write: Write, now: datetime) -> list[str]:
        """_WRITE's ARGV for ``write`` at ``now``."""
        result, error = write.result, write.error
        return [
            write.state.value,
            write.name,
            now.isoformat(),
            self._ttl_ms(),
            "1" if write.only_if_absent else "0",
            "" if result is NO_RESULT else to_json(result, what="a task result").decode(),
            "" if error is None else error.model_dump_json(),
            *self._index_args(write.task_id, now),
        ]

    def _written(self, task_id: str, reply: Any) -> TaskStatus | None:
        """A _WRITE reply: the record's HGETALL as a flat list, or nothing if refused."""
        if not reply:
            return None
        return self._decode(task_id, dict(zip(reply[::2], reply[1::2], strict=True)))

    @property
    def _connection(self) -> _Connection:
        if self._conn is None:
            raise StoreError(f"store {self.display_url} is not connected: call connect() first")
        return self._conn

    def _ttl_ms(self) -> str:
        """The scripts' ttl argument: milliseconds, or '' for records that never expire."""
        return "" if self.ttl is None else str(max(1, math.ceil(self.ttl * 1000)))

    def _key(self, task_id: str) -> str:
        return f"{self.prefix}:task:{task_id}"

    @property
    def _index(self) -> str:
        return f"{self.prefix}:recent"

    def _keys(self, task_id: str) -> list[str]:
        """A write script's keys: the record and the index."""
        return [self._key(task_id), self._index]

    def _index_args(self, task_id: str, now: datetime) -> list[str]:
        """_INDEX's arguments for a write at ``now``: exact integers, as strings."""
        score = _micros(now)
        expired_before = "" if self.ttl is None else str(score - math.ceil(self.ttl * 1e6))
        return [task_id, str(score), expired_before, str(RECENT_INDEX_SIZE)]

    def _decode(self, task_id: str, fields: dict[str, str]) -> TaskStatus:
        try:
            return TaskStatus.model_validate(
                {
                    **fields,
                    "id": task_id,
                    "result": json.loads(fields["result"]) if "result" in fields else None,
                    "error": json.loads(fields["error"]) if "error" in fields else None,
                }
            )
        except ValueError as exc:  # JSONDecodeError and ValidationError both are
            raise StoreError(
                f"unreadable record of task {task_id} in {self.display_url}: {exc}"
            ) from exc

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where redis errors become :class:`StoreError`, password masked."""
        try:
            yield
        except RedisError as exc:
            reason = self._scrub(f"{type(exc).__name__}: {exc}")
            raise StoreError(f"status store {self.display_url} failed: {reason}") from exc

    def _scrub(self, text: str) -> str:
        """Drivers may echo the URL or its password; ours must not reach a message."""
        return scrub(text, self._url)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp rounds them)."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
