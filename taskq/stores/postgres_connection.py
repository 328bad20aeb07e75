"""How :class:`~taskq.stores.postgres.PostgresStore` reaches PostgreSQL: the URL read
as libpq reads it, an asyncpg pool, and the one boundary where driver errors become
:class:`~taskq.errors.StoreError`.

asyncpg, not psycopg 3 (``tests/pg_driver_bench.py``, the store's own SQL, this
machine): without prepared statements, as PgBouncer needs, both cost the client the
same CPU on the store's hot operations (a worker's batch of 100 ``started`` then 100
``succeeded`` moves, a create, a get), the server's time being the same SQL; with them
asyncpg's gets are faster (0.12-0.16 ms against 0.19-0.23 ms), and it reads libpq's
URLs (several hosts, ``target_session_attrs``, ``sslmode``...) without libpq.

PgBouncer's transaction mode hands each transaction to any server connection, so
nothing here keeps session state: no named prepared statements (asyncpg's
``statement_cache_size=0``: each statement is parsed unnamed, in the round trip that
runs it), no ``SET``, no ``LISTEN``, advisory locks only per transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from taskq.errors import ConfigurationError, StoreError
from taskq.urls import mask_url, scrub

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

#: Seconds a store call may take, waiting for a pooled connection, connecting and the
#: query together, before it fails with StoreError: a stalled or restarting PostgreSQL
#: must not hang every publish and every worker (the worker then requeues the task).
OPERATION_TIMEOUT = 10.0
#: Connections per store (per process); more concurrent calls wait their turn. The
#: worker's writes are batched (one call in flight), so few are ever busy.
POOL_SIZE = 10

#: Seconds a connection given back to the pool may take to settle (a cancelled query's
#: cancel confirmed) before it is dropped.
RELEASE_TIMEOUT = 1.0

#: The URL schemes of the store.
SCHEMES = ("postgresql", "postgres")


#: libpq's client-side options asyncpg does not read (it would send them to the server
#: as settings, which refuses them): those that only tune what the driver does anyway
#: or cannot change (TCP keepalives, SNI, compression) are dropped; those whose value
#: asks for what the driver cannot do are refused in one line.
_DROPPED = frozenset(
    {
        "keepalives", "keepalives_idle", "keepalives_interval", "keepalives_count",
        "tcp_user_timeout", "sslsni", "sslcompression",
    }
)  # fmt: skip
#: Options the driver honours only in these values (what it does without them).
_ONLY = {
    "gssencmode": ("disable", "prefer"),  # no GSSAPI encryption: TLS is the driver's
    "channel_binding": ("disable", "prefer"),  # SCRAM without channel binding
    "load_balance_hosts": ("disable",),  # hosts are tried in the order given
}
_UNSUPPORTED = frozenset(
    {"hostaddr", "replication", "sslcertmode", "require_auth", "gssdelegation", "sslkeylogfile"}
)


def driver_options(url: str) -> tuple[str, float]:
    """The DSN asyncpg is given and the connect timeout: libpq's ``connect_timeout``
    (seconds) is taken out of the query, as asyncpg would send it to the server as a
    setting, and so are the libpq options asyncpg does not read (see ``_DROPPED``,
    ``_ONLY``; ``fallback_application_name`` becomes ``application_name`` if that is not
    given; ``requiressl=1`` is ``sslmode=require``). Everything else (several hosts,
    ``target_session_attrs``, ``sslmode``, ``sslrootcert``, ``sslcert``, ``sslkey``,
    ``sslpassword``, ``sslcrl``, ``passfile``, ``service``...) is asyncpg's to read, as
    libpq spells it; any other name is a server setting (``application_name=...``)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    names = {name for name, _ in query}
    timeout = OPERATION_TIMEOUT
    kept = []
    for name, value in query:
        if name in _DROPPED:
            continue
        if name == "requiressl":  # libpq's old spelling; an sslmode given wins
            if value == "1" and "sslmode" not in names:
                kept.append(("sslmode", "require"))
            continue
        if name == "fallback_application_name":
            if "application_name" not in names:
                kept.append(("application_name", value))
            continue
        if name in _UNSUPPORTED or (name in _ONLY and value not in _ONLY[name]):
            shown = name if name in _UNSUPPORTED else f"{name}={value}"
            raise ConfigurationError(
                f"the store URL {mask_url(url)!r} asks for {shown}, which the PostgreSQL "
                "store's driver (asyncpg) cannot do"
            )
        if name in _ONLY:
            continue
        if name == "connect_timeout":
            try:
                timeout = float(value)
            except ValueError:
                raise ConfigurationError(
                    f"the store URL {mask_url(url)!r} has connect_timeout={value!r}: give seconds"
                ) from None
            if timeout <= 0:  # libpq: 0 waits for ever; we never do
                timeout = OPERATION_TIMEOUT
        else:
            kept.append((name, value))
    return urlunsplit(parts._replace(query=urlencode(kept))), timeout


async def open_pool(url: str, *, dsn: str, connect_timeout: float) -> asyncpg.Pool:
    """A pool whose first connection is made now (unreachable: the driver's error)."""
    import asyncpg

    try:
        pool: asyncpg.Pool = await asyncpg.create_pool(
            dsn,
            min_size=1,
            max_size=POOL_SIZE,
            statement_cache_size=0,
            timeout=connect_timeout,
            # A pooled connection idle this long is closed: after a failover the pool
            # does not keep connections to the old primary for long.
            max_inactive_connection_lifetime=60.0,
            reset=_nothing_to_reset,
        )
    except ValueError as exc:  # asyncpg's DSN parser (a bad port, an unknown sslmode)
        if isinstance(exc, OSError):  # a refused certificate is both: the store's error
            raise
        raise ConfigurationError(f"invalid store URL {mask_url(url)!r}: {exc}") from None
    return pool


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """Nothing to reset: the store sets no session state. asyncpg's default reset runs
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`` at every release: a
    round trip per store call (a transaction left open is rolled back by the pool
    itself, without this)."""


def is_driver_error(exc: BaseException) -> bool:
    """An error of the driver or of the connection under it (not ours, not a bug)."""
    import asyncpg

    return isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError | OSError | TimeoutError)


@asynccontextmanager
async def store_errors(
    url: str, display_url: str, listeners: tuple[Callable[[StoreError], None], ...]
) -> AsyncIterator[None]:
    """The one place where driver errors become :class:`StoreError`, password masked."""
    try:
        yield
    except StoreError:
        raise
    except Exception as exc:
        if not is_driver_error(exc):
            raise
        if isinstance(exc, TimeoutError):
            reason = "no answer in time (the store timeout)"
        else:
            reason = scrub(f"{type(exc).__name__}: {exc}", url)
        error = StoreError(f"status store {display_url} failed: {reason}")
        for listener in listeners:
            listener(error)
        raise error from exc


@asynccontextmanager
async def acquired(pool: asyncpg.Pool, timeout: float) -> AsyncIterator[PoolConnectionProxy]:
    """A pooled connection; waiting for it and the queries made with it end within
    ``timeout`` seconds (call inside store_errors)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with asyncio.timeout_at(deadline):
        conn = await pool.acquire()
    try:
        async with asyncio.timeout_at(deadline):
            yield conn
    finally:
        # A query cut off by the timeout leaves its connection waiting for the
        # server to confirm the cancel, which a frozen server never does: the pool
        # waits this long, then drops the connection (without a timeout it waited
        # for ever, and so did the call).
        await pool.release(conn, timeout=RELEASE_TIMEOUT)
