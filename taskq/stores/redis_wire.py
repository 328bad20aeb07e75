"""Script calls written straight onto one pooled connection: the store's write path.

Every status write is one ``EVALSHA`` of the write script. Through redis-py each call
(or pipeline of calls) pays for machinery a status write does not need: a pipeline
asks ``SCRIPT EXISTS`` for its scripts first (a second round trip per pipeline), every
reply is read inside a fresh ``asyncio.timeout`` (a timer per reply), and the command
stack, its retry wrapper and the per-call option handling add the rest. Profiled on a
worker draining no-op tasks (py-spy, issue 14), redis-py's pipeline was 22% of the
worker's CPU and the whole write path 42%; measured on its own, a batch of 100 writes
cost 29-32 µs a write that way and 15-17 µs this way.

Here a batch is packed with hiredis (as :mod:`taskq.stores.redis_packing`), written
with one call onto a connection taken from the client's own pool (so its connect,
AUTH, SELECT and TLS are redis-py's), and its replies read by the connection's hiredis
parser, all within ONE time box. What this leans on of redis-py (8.x): a pool's
``get_connection`` / ``release``, a connection's ``_writer`` (its asyncio stream),
``_parser.read_response()`` and ``disconnect``; the store contract tests run it.

A connection whose batch did not end cleanly (a time box hit, a broken stream, a
cancellation mid-read) may still have replies on their way: it is disconnected before
it goes back to the pool, never reused with a reply of someone else's in it. A script
the server does not have cached (``NOSCRIPT``: after a ``SCRIPT FLUSH`` or a restart)
did not run, so only those calls are sent again, after ``SCRIPT LOAD``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from redis.asyncio import ConnectionPool
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:
    import hiredis

    _pack: Callable[[tuple[Any, ...]], bytes] | None = getattr(hiredis, "pack_command", None)
except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis])
    _pack = None

#: ``(keys, args)`` of one script call.
ScriptCall = tuple[Sequence[str], Sequence[str]]


class ScriptRunner:
    """Runs one Lua script (its text and SHA1) for many calls in one round trip."""

    def __init__(self, pool: ConnectionPool, script: str, sha: str, *, timeout: float) -> None:
        self._pool = pool
        self._script = script
        self._sha = sha
        self._timeout = timeout

    def _packed(self, keys: Sequence[str], args: Sequence[str]) -> bytes:
        command: tuple[str | int, ...] = ("EVALSHA", self._sha, len(keys), *keys, *args)
        if _pack is not None:
            return _pack(command)
        return b"".join(self._pool.connection_class().pack_command(*command))  # pragma: no cover

    async def run(self, calls: Sequence[ScriptCall]) -> list[Any]:
        """Each call's reply, in order. Raises the first error reply (a
        :class:`~redis.exceptions.ResponseError`) once every reply is read, and
        redis-py's connection and timeout errors as they come."""
        packed = [self._packed(keys, args) for keys, args in calls]
        replies = await self._send(packed)
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if missing:
            await self._load()
            again = await self._send([packed[i] for i in missing])
            for index, reply in zip(missing, again, strict=True):
                replies[index] = reply
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def _load(self) -> None:
        connection: Any = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await connection.send_command("SCRIPT", "LOAD", self._script)
            await connection.read_response()
        finally:
            await self._pool.release(connection)

    async def _send(self, packed: list[bytes]) -> list[Any]:
        connection: Any = await self._pool.get_connection()  # type: ignore[no-untyped-call]
        clean = False
        try:
            async with asyncio.timeout(self._timeout):
                connection._writer.writelines(packed)
                parser = connection._parser
                # Error replies come back as ResponseError values, not raised.
                replies = [await parser.read_response() for _ in packed]
            clean = True
            return replies
        except TimeoutError as exc:  # our time box (redis-py's own errors pass as they are)
            raise RedisTimeoutError(f"no reply from Redis within {self._timeout:g}s") from exc
        except OSError as exc:
            raise RedisConnectionError(f"error writing to or reading from Redis: {exc}") from exc
        finally:
            if not clean:
                # Replies may still be on their way: never hand this one out again.
                await connection.disconnect(nowait=True)
            await self._pool.release(connection)
