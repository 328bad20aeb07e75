"""hiredis for packing commands, where redis-py's asyncio client does not use it.

redis-py parses replies with hiredis when it is installed, but its asyncio connections
still pack every command in pure Python: 12 µs for one of our script calls against
1.2 µs with ``hiredis.pack_command``, which redis-py's sync client already uses. A
worker makes two such calls per task, so that was a tenth of its CPU (issue 5). The
connection class the pool chose (plain, TLS or Unix socket) is kept, only its
``pack_command`` changes; without hiredis nothing changes at all.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool
from redis.exceptions import DataError

try:
    import hiredis

    _pack = getattr(hiredis, "pack_command", None)
except ImportError:  # pragma: no cover - hiredis is a dependency (redis[hiredis])
    _pack = None


class _HiredisPacking:
    """Mixed in before a redis-py asyncio connection class."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # As redis-py's own (sync) HiredisRespSerializer: a first argument such as
        # "CLIENT SETNAME" is two words of the protocol.
        first = args[0]
        if isinstance(first, str):
            args = (*first.encode().split(), *args[1:])
        elif b" " in first:
            args = (*first.split(), *args[1:])
        try:
            return [_pack(args)]  # type: ignore[misc]
        except TypeError:
            pass
        # hiredis takes str, bytes, int and float; redis-py also bytearray and memoryview.
        args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [_pack(args)]  # type: ignore[misc]
        except TypeError as exc:
            raise DataError(str(exc)) from exc


def use_hiredis_packing(pool: ConnectionPool) -> None:
    """Make the connections ``pool`` opens from now on pack with hiredis, if installed."""
    if _pack is None:
        return
    base = pool.connection_class
    if issubclass(base, _HiredisPacking):
        return
    pool.connection_class = type(f"Hiredis{base.__name__}", (_HiredisPacking, base), {})
