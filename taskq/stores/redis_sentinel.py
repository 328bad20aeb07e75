"""The Redis store behind Redis Sentinel: it follows the master the sentinels name.

    store="redis+sentinel://:secret@10.0.0.1:26379,10.0.0.2:26379,10.0.0.3:26379/mymaster/0"

The URL names the sentinels (any number, ``host:port`` separated by commas), the
master's name as the sentinels know it, and optionally the database. The password is
the Redis servers'; sentinels that want one of their own get ``?sentinel_password=``.
Everything else is :class:`~taskq.stores.redis.RedisStore`'s: the same records, scripts
and keys, so a deployment can move from ``redis://`` to Sentinel without a migration.

What a failover looks like from here (measured in ``tests/faults/test_sentinel.py``):
the primary dies, the sentinels agree it is down after ``down-after-milliseconds`` and
promote a replica. Meanwhile every call finds no master, or the dead one, or a
demoted one answering READONLY: each of these is retried, the sentinels asked again,
until the new master answers or :data:`~taskq.stores.redis.OPERATION_TIMEOUT` passed
since the call began. So a send during a failover returns, late, instead of raising;
a worker's write that runs out of time is a StoreError and its message is requeued.

A retried call may have been carried out before the connection broke (the answer was
lost, not the write). For the conditional moves that is harmless (the repeat is
refused and the first outcome kept), except for a publisher's create with a task id
of its own: refused, it would read as "this id is known" and the task would not be
published at all. So a create refused after a retry, whose record is still ``queued``
and never started, counts as written: the worst case is a second publish of an id a
concurrent send just made, which the records' checks make harmless.

``wait_replicas`` defaults to 1 here (see :mod:`taskq.stores.redis_replicas`): with no
replica holding an outcome, a failover can take it back after the worker acked.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError

from taskq.errors import ConfigurationError, StoreError
from taskq.status import TaskState
from taskq.stores.base import DEFAULT_TTL, Write
from taskq.stores.redis import MAX_CONNECTIONS, OPERATION_TIMEOUT, RedisStore
from taskq.stores.redis_packing import use_hiredis_packing
from taskq.urls import mask_url

#: Seconds a sentinel may take to answer: one that does not is skipped for the next,
#: so a sentinel host that went silent costs a failover this much, not a store timeout.
SENTINEL_TIMEOUT = 1.0
#: The longest pause between two attempts to find the master during a failover.
_MAX_PAUSE = 0.25
_OPTIONS = frozenset({"wait_replicas", "wait_timeout", "sentinel_password"})

T = TypeVar("T")

#: Set when a call of this task was retried after an error: its first try may have
#: been carried out (see the module docstring).
_retried: contextvars.ContextVar[bool] = contextvars.ContextVar("taskq_sentinel_retried")


class _UntilMaster(Retry):
    """redis-py's retry policy for every command and connect of the store's client:
    connection errors (no master named yet, the old one gone, a demoted one's
    READONLY, which redis-py turns into one) are retried with a short growing pause
    until ``seconds`` after the call began, instead of a number of times."""

    def __init__(self, seconds: float) -> None:
        super().__init__(NoBackoff(), retries=-1)
        self.seconds = seconds

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline = time.monotonic() + self.seconds
        pause = 0.02
        failures = 0
        while True:
            try:
                return await do()
            except self._supported_errors as error:
                if is_retryable is not None and not is_retryable(error):
                    raise
                failures += 1
                _retried.set(True)
                try:  # the caller's clean-up: drop the broken connection
                    await (fail(error, failures) if with_failure_count else fail(error))
                except self._supported_errors:
                    pass
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, _MAX_PAUSE)


class _MasterConnection(SentinelManagedConnection):
    """A connection to the master that asks the sentinels again whenever it reconnects.

    redis-py 8.2's asyncio connection reconnects a dropped connection on its next send
    straight to the address it had (``send_packed_command`` calls
    ``connect_check_health``, not the Sentinel-aware ``connect``). After a failover
    that is the dead primary: refused until it is restarted, then an empty master of
    its own (writes landed there, lost when the sentinels make it a replica; measured
    here: 10 s of READONLY retries until the call gave up)."""

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect()  # type: ignore[no-untyped-call]  # the master of now
        await super().send_packed_command(command, check_health)


class _BlockingSentinelPool(SentinelConnectionPool, BlockingConnectionPool):
    """The master's connections, as many as :data:`MAX_CONNECTIONS`, a burst waiting
    for a free one (as :class:`RedisStore`'s pool does) rather than failing."""


class RedisSentinelStore(RedisStore):
    """:class:`RedisStore` on the master the sentinels of ``redis+sentinel://`` name."""

    DEFAULT_WAIT_REPLICAS = 1
    #: Writes through redis-py, whose retry policy (:class:`_UntilMaster`) follows the
    #: master through a failover; the store's raw write path would skip it.
    RAW_WRITES = False

    def __init__(self, url: str, *, ttl: float | None = DEFAULT_TTL, prefix: str = "taskq") -> None:
        super().__init__(url, ttl=ttl, prefix=prefix)
        self._sentinel: Sentinel | None = None
        #: Where the sentinels are and what they call the master.
        self.address = parse_url(url)

    def _client(self) -> Redis:
        retry = _UntilMaster(OPERATION_TIMEOUT)
        sentinel_options: dict[str, Any] = {
            "socket_timeout": SENTINEL_TIMEOUT,
            "socket_connect_timeout": SENTINEL_TIMEOUT,
        }
        address = self.address
        if address.sentinel_password is not None:
            sentinel_options["password"] = address.sentinel_password
        sentinel = Sentinel(address.sentinels, sentinel_kwargs=sentinel_options)
        client: Redis = sentinel.master_for(
            address.master,
            connection_pool_class=_BlockingSentinelPool,
            connection_class=_MasterConnection,
            db=address.db,
            password=address.password,
            decode_responses=True,
            max_connections=MAX_CONNECTIONS,
            timeout=OPERATION_TIMEOUT,
            socket_timeout=OPERATION_TIMEOUT,
            socket_connect_timeout=OPERATION_TIMEOUT,
            retry=retry,
        )
        use_hiredis_packing(client.connection_pool)
        self._sentinel = sentinel
        return client

    async def close(self) -> None:
        await super().close()
        sentinel, self._sentinel = self._sentinel, None
        if sentinel is not None:
            with self._errors():
                await sentinel.aclose()

    async def _write_replies(self, writes: Sequence[Write], *, records: bool = False) -> list[Any]:
        """Every batch of status writes (a worker's moves, a sender's creates) comes
        this way: see the module docstring for what a retry means to a create."""
        replies, retried = await _tracking_retries(lambda: self._replies_once(writes, records))
        if retried:
            replies = [
                await self._own_create(w, r, records) for w, r in zip(writes, replies, strict=True)
            ]
        return replies

    async def _replies_once(self, writes: Sequence[Write], records: bool) -> list[Any]:
        """A pipeline retried onto a new master finds its scripts unknown there (redis-py
        loads them before the pipeline, not after a reconnect): every write of it was
        refused, so it is sent once more, with the scripts loaded."""
        try:
            return await super()._write_replies(writes, records=records)
        except StoreError as exc:
            if not isinstance(exc.__cause__, NoScriptError):
                raise
        return await super()._write_replies(writes, records=records)

    async def _own_create(self, write: Write, reply: Any, records: bool) -> Any:
        """A create refused after a retry: written by its own first try if the record
        is still an untouched ``queued`` one of that name; then answered as the write
        script would have: its fields, flat, or (``records=False``) state and attempts."""
        if reply or not write.only_if_absent:
            return reply
        with self._errors():
            fields = await self._connection.client.hgetall(self._key(write.task_id))
        if (
            fields.get("state") == TaskState.QUEUED.value
            and int(fields.get("attempts") or 0) == 0
            and fields.get("name") == write.name
        ):
            if not records:
                return [fields["state"], fields.get("attempts") or "0"]
            return [item for pair in fields.items() for item in pair]
        return reply


async def _tracking_retries(call: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
    """``call()``'s answer, and whether any command in it was retried."""
    token = _retried.set(False)
    try:
        answer = await call()
        return answer, _retried.get()
    finally:
        _retried.reset(token)


@dataclass(frozen=True)
class SentinelAddress:
    """What a ``redis+sentinel://`` URL says."""

    sentinels: list[tuple[str, int]]
    #: The master's name as the sentinels know it (``sentinel monitor <name> ...``).
    master: str
    db: int = 0
    password: str | None = field(default=None, repr=False)
    sentinel_password: str | None = field(default=None, repr=False)


def parse_url(url: str) -> SentinelAddress:
    """The sentinels, master name, database and passwords of ``url``."""
    shown = mask_url(url)
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels: list[tuple[str, int]] = []
    for host in hosts.split(","):
        name, colon, port = host.rpartition(":")
        if not colon or not name or not port.isdigit():
            raise ConfigurationError(
                f"store URL {shown!r}: each sentinel is host:port "
                "(redis+sentinel://h1:26379,h2:26379,h3:26379/mymaster/0)"
            )
        sentinels.append((name.strip("[]"), int(port)))
    path = [unquote(p) for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigurationError(
            f"store URL {shown!r}: give the master's name and optionally the database, "
            "as in redis+sentinel://h1:26379,h2:26379/mymaster/0"
        )
    options = dict(parse_qsl(parts.query, keep_blank_values=True))
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise ConfigurationError(
            f"store URL {shown!r}: unknown option(s) {', '.join(unknown)}; a Sentinel URL "
            f"takes {', '.join(sorted(_OPTIONS))}"
        )
    password = unquote(parts.password) if parts.password is not None else None
    db = int(path[1]) if len(path) == 2 else 0
    return SentinelAddress(sentinels, path[0], db, password, options.get("sentinel_password"))
