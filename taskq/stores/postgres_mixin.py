"""What the mixins of :class:`~taskq.stores.postgres.PostgresStore` are given by it:
its quoted schema, its ttl, and calls through its one error boundary."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy


class PostgresPart:
    """Declares what PostgresStore (first in the method resolution order) provides."""

    ttl: float | None
    #: The schema, quoted, for SQL text.
    _s: str

    def _conn_for_call(self) -> AbstractAsyncContextManager[PoolConnectionProxy]:
        raise NotImplementedError

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        raise NotImplementedError


#: A row's ``expires_at`` has not passed: the row is live.
LIVE = "(expires_at IS NULL OR expires_at > now())"


#: The ``expires_at`` of a row written now, with the ttl (seconds or NULL) as ``$n``.
def expires(param: int) -> str:
    return f"now() + ${param}::float8 * interval '1 second'"
