"""The status store on Redis: one HASH per task, changed only by Lua scripts.

Key ``{prefix}:task:{task_id}``, fields ``state``, ``name``, ``attempts``,
``created_at``, ``started_at``, ``finished_at`` (ISO-8601), ``result`` (JSON),
``error`` (JSON of :class:`~taskq.status.ErrorInfo``) and ``call`` (JSON
``{"args": [...], "kwargs": {...}}`` or ``{"truncated": true, "bytes": N}``, written
by the publisher's create: :mod:`taskq.call_record`): plain enough for a reader in
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

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from taskq.errors import ConfigurationError, StoreError
from taskq.logs import get_logger
from taskq.status import ErrorInfo, TaskState, TaskStatus, utcnow
from taskq.stores.base import (
    DEFAULT_TTL,
    NO_RESULT,
    Create,
    Move,
    Moved,
    StatusStore,
    Write,
    call_of,
)
from taskq.stores.redis_broadcast import RedisBroadcasts
from taskq.stores.redis_listing import RedisListing
from taskq.stores.redis_packing import use_hiredis_packing
from taskq.stores.redis_rate import RedisStartLimits
from taskq.stores.redis_records import Stamp, decode, micros, write_args
from taskq.stores.redis_replicas import ReplicaWait
from taskq.stores.redis_schedules import RedisSchedules
from taskq.stores.redis_scripts import _CANCEL, _DISCARD, _RECENT, _RESET, _WRITE
from taskq.stores.redis_wire import ScriptRunner
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
_INDEX_KEEP = str(RECENT_INDEX_SIZE)
# Index entries one _RECENT call looks at: a few milliseconds of Redis's time.
_RECENT_PAGE = 1000

log = get_logger(__name__)


@dataclass(frozen=True)
class _Connection:
    client: Redis
    write: AsyncScript
    discard: AsyncScript
    reset: AsyncScript
    recent: AsyncScript
    cancel: AsyncScript
    #: The write script run straight on a pooled connection (taskq.stores.redis_wire).
    writes: ScriptRunner


class RedisStore(
    RedisWorkflows, RedisBroadcasts, RedisStartLimits, RedisSchedules, RedisListing, StatusStore
):
    """Task records in Redis (``redis://`` or ``rediss://``), shared by every process
    that points at the same server and ``prefix``."""

    #: Replicas a write batch waits for when the URL does not say (``?wait_replicas=``).
    DEFAULT_WAIT_REPLICAS = 0
    #: Status writes go straight onto a pooled connection (taskq.stores.redis_wire),
    #: past redis-py's pipeline; a batch with a ``WAIT`` and a subclass that relies on
    #: redis-py's retry policy (Sentinel, following the master) take the pipeline.
    RAW_WRITES = True

    def __init__(self, url: str, *, ttl: float | None = DEFAULT_TTL, prefix: str = "taskq") -> None:
        super().__init__(ttl=ttl)
        self.display_url = mask_url(url)
        self.prefix = prefix
        self._url = url
        #: ``?wait_replicas=N``: how many replicas each batch of task writes waits for.
        self.replicas = ReplicaWait.from_url(url, default=self.DEFAULT_WAIT_REPLICAS)
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
            client = self._client()
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
        # The URL's socket_timeout, if it set one, bounds a batch of writes as a call.
        pool = client.connection_pool
        timeout = pool.connection_kwargs.get("socket_timeout") or OPERATION_TIMEOUT
        writes = ScriptRunner(pool, _WRITE, write.sha, timeout=timeout)
        self._conn = _Connection(client, write, discard, reset, recent, cancel, writes)
        log.debug("store connected", store=self.display_url)

    def _client(self) -> Redis:
        """A client of the server the URL names; a subclass finds its server otherwise
        (:mod:`taskq.stores.redis_sentinel`)."""
        # A blocking pool: a burst of concurrent writes (thousands of tasks finishing
        # at once) waits for a free connection instead of failing with "Too many
        # connections", which the default pool raises at once. from_url keeps the
        # URL's query options (TLS among them) for every connection it makes.
        pool = BlockingConnectionPool.from_url(
            self.replicas.strip(self._url),
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            timeout=OPERATION_TIMEOUT,
            socket_timeout=OPERATION_TIMEOUT,
            socket_connect_timeout=OPERATION_TIMEOUT,
        )
        use_hiredis_packing(pool)
        return Redis.from_pool(pool)  # closing the client closes the pool

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

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        """One pipeline of ``HGETALL``: one round trip and one pooled connection."""
        if not task_ids:
            return []
        with self._errors():
            async with self._connection.client.pipeline(transaction=False) as pipe:
                for task_id in task_ids:
                    pipe.hgetall(self._key(task_id))
                replies = cast(list[dict[str, str]], await pipe.execute())
        return [self._decode(i, f) if f else None for i, f in zip(task_ids, replies, strict=True)]

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
        call: str | None = None,
    ) -> TaskStatus | None:
        write = Write(task_id, name, state, only_if_absent, result, error, call)
        if self.replicas.count and not only_if_absent:
            return (await self.write_many([write]))[0]  # with its WAIT, in one pipeline
        args = self._write_args(write, self._stamp(utcnow()), record=True)
        with self._errors():
            if self.RAW_WRITES:
                (reply,) = await self._connection.writes.run([(self._keys(task_id), args)])
            else:
                reply = await self._connection.write(keys=self._keys(task_id), args=args)
        return self._written(task_id, reply)

    async def write_many(self, writes: Sequence[Write]) -> list[TaskStatus | None]:
        """One round trip of script calls (no MULTI: each script is atomic on its own).
        With ``wait_replicas``, a batch holding a worker's moves ends with a ``WAIT``
        in the same pipeline (see :mod:`taskq.stores.redis_replicas`)."""
        replies = await self._write_replies(writes, records=True)
        return [self._written(w.task_id, reply) for w, reply in zip(writes, replies, strict=True)]

    async def move_many(self, writes: Sequence[Write]) -> list[Moved | None]:
        """The script answers only the state and attempts of each record moved."""
        replies = await self._write_replies(writes)
        return [
            None if not reply else self._moved(w.task_id, reply)
            for w, reply in zip(writes, replies, strict=True)
        ]

    def _moved(self, task_id: str, reply: list[str | None]) -> Moved:
        state, attempts = reply
        try:
            return Move(TaskState(state or ""), int(attempts or 0))
        except ValueError as exc:
            raise StoreError(
                f"unreadable record of task {task_id} in {self.display_url}: {reply!r}"
            ) from exc

    async def create_many(self, items: Sequence[Create]) -> list[bool]:
        """As the base class, without decoding the records created: a sender only needs
        to know whether each was (decoding one cost ~10 µs, its call included)."""
        writes = [
            Write(item[0], item[1], TaskState.QUEUED, only_if_absent=True, call=call_of(item))
            for item in items
        ]
        return [bool(reply) for reply in await self._write_replies(writes)]

    async def create(self, task_id: str, name: str, call: str | None = None) -> bool:
        return (await self.create_many([(task_id, name, call)]))[0]

    async def _write_replies(self, writes: Sequence[Write], *, records: bool = False) -> list[Any]:
        """The script's replies to ``writes``: whole records, or with ``records=False``
        state and attempts (see :meth:`_write_args`)."""
        if not writes:
            return []
        stamp = self._stamp(utcnow())
        # Encoded before anything is sent: a result JSON cannot carry fails the call.
        calls = [
            (self._keys(w.task_id), self._write_args(w, stamp, record=records)) for w in writes
        ]
        waits = self.replicas.applies_to(writes)
        conn = self._connection
        if not waits and self.RAW_WRITES:
            with self._errors():
                return await conn.writes.run(calls)
        with self._errors():
            async with conn.client.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await conn.write(keys=keys, args=args, client=pipe)
                if waits:
                    self.replicas.add_to(pipe)
                replies = await pipe.execute()
        if waits and (shortfall := self.replicas.shortfall(replies.pop())) is not None:
            raise self._failure(shortfall)
        return list(replies)

    def _stamp(self, now: datetime) -> Stamp:
        """The arguments a batch of writes at ``now`` share, made once per batch: now
        (ISO-8601), ttl in ms, and _INDEX's score, expired-before and size to keep."""
        return now.isoformat(), self._ttl_ms(), *self._scores(now), _INDEX_KEEP

    #: _WRITE's ARGV for a write at a stamp (:func:`taskq.stores.redis_records.write_args`).
    _write_args = staticmethod(write_args)

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
        return [task_id, *self._scores(now), _INDEX_KEEP]

    def _scores(self, now: datetime) -> tuple[str, str]:
        """_INDEX's score of a write at ``now``, and below which entries expired ('')."""
        score = micros(now)
        expired_before = "" if self.ttl is None else str(score - math.ceil(self.ttl * 1e6))
        return str(score), expired_before

    def _decode(self, task_id: str, fields: dict[str, str]) -> TaskStatus:
        return decode(task_id, fields, self.display_url)

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """The one place where redis errors become :class:`StoreError`, password masked."""
        try:
            yield
        except RedisError as exc:
            raise self._failure(self._scrub(f"{type(exc).__name__}: {exc}")) from exc

    def _failure(self, reason: str) -> StoreError:
        """The error to raise for a failed call, its listeners told."""
        error = StoreError(f"status store {self.display_url} failed: {reason}")
        for listener in self._error_listeners:
            listener(error)
        return error

    def _scrub(self, text: str) -> str:
        """Drivers may echo the URL or its password; ours must not reach a message."""
        return scrub(text, self._url)
