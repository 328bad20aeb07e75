"""The purge of :class:`~taskq.stores.postgres.PostgresStore`: expired rows deleted
every :data:`PURGE_INTERVAL` seconds by every connected store, in batches of
:data:`PURGE_BATCH`, each its own short statement whose rows another purge holds are
skipped (``FOR UPDATE SKIP LOCKED``), not waited for: no purge holds long locks, and
many processes purging at once share the work. Until it runs, an expired row reads as
absent (every read checks ``expires_at``)."""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING

from taskq.errors import StoreError
from taskq.logs import get_logger
from taskq.stores.postgres_mixin import PostgresPart

#: Seconds between two purges of expired rows by one store (jittered by a quarter).
PURGE_INTERVAL = 60.0
#: Rows one purge statement deletes at most: a few milliseconds of locks.
PURGE_BATCH = 500
#: Statements one purge runs at most before it waits for the next round.
PURGE_ROUNDS = 200

#: The tables the purge empties of expired rows, with their keys.
_EXPIRING = {
    "tasks": "id",
    "worker_tasks": "task_id, worker",
    "workflows": "id",
    "joins": "workflow_id, grp",
}

log = get_logger(__name__)


class PostgresPurge(PostgresPart):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    display_url: str

    if TYPE_CHECKING:  # PostgresStartLimits', later in the method resolution order

        async def _purge_rates(self) -> int: ...

    async def purge_expired(self) -> int:
        """Delete expired rows, :data:`PURGE_BATCH` at a time, each batch its own
        statement (rows another purge holds are skipped, not waited for), at most
        :data:`PURGE_ROUNDS` batches; how many rows were deleted."""
        deleted = 0
        for table, key in _EXPIRING.items():
            sql = (
                f"DELETE FROM {self._s}.{table} WHERE ({key}) IN ("
                f"SELECT {key} FROM {self._s}.{table} WHERE expires_at <= now()"
                f" ORDER BY expires_at LIMIT {PURGE_BATCH} FOR UPDATE SKIP LOCKED)"
            )
            for _ in range(PURGE_ROUNDS):
                async with self._conn_for_call() as conn:
                    status = await conn.execute(sql)
                count = int(status.split()[-1])
                deleted += count
                if count < PURGE_BATCH:
                    break
        deleted += await self._purge_rates()
        return deleted

    async def _purge_forever(self) -> None:
        while True:
            await asyncio.sleep(PURGE_INTERVAL * random.uniform(0.75, 1.25))
            try:
                deleted = await self.purge_expired()
            except StoreError as exc:
                log.warning(
                    "purge of expired records failed", store=self.display_url, error=str(exc)
                )
            else:
                if deleted:
                    log.debug("expired records purged", store=self.display_url, rows=deleted)
