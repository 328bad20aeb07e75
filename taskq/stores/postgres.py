"""The status store on PostgreSQL (``postgresql://`` or ``postgres://``): one row per
task, changed only by the schema's SQL functions.

Table ``<schema>.tasks`` (:mod:`taskq.stores.postgres_schema`), one row per task:
``id``, ``name``, ``state``, ``attempts``, ``result`` and ``error`` (JSON text, as the
Redis store keeps them), ``call`` (:mod:`taskq.call_record`), ``created_at``,
``started_at``, ``finished_at``, ``cancel_requested``, ``written`` (the order of the
last write, from a sequence: what the recent-task listing walks, by index) and
``expires_at``. Every state move is one ``UPDATE ... WHERE state = ANY(...)`` in the
function ``write()``, so checking the current state and writing the new one is atomic
across any number of processes; a worker's batch of moves is one call of
``write_many()`` with arrays: one round trip.

A record is expired once ``expires_at`` has passed: reads and writes treat it as absent
at once, and every connected store deletes expired rows in small batches
(:mod:`taskq.stores.postgres_purge`), so no purge holds long locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from taskq.call_record import read_call
from taskq.errors import StoreError
from taskq.logs import get_logger
from taskq.message import to_json
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.base import (
    DEFAULT_TTL,
    NO_RESULT,
    Create,
    Migration,
    Move,
    Moved,
    StatusStore,
    Write,
    call_of,
)
from taskq.stores.listing_base import TaskFilter
from taskq.stores.postgres_broadcast import PostgresBroadcasts
from taskq.stores.postgres_connection import (
    OPERATION_TIMEOUT,
    acquired,
    driver_options,
    open_pool,
    store_errors,
)
from taskq.stores.postgres_listing import PostgresListing
from taskq.stores.postgres_migrate import migrate
from taskq.stores.postgres_purge import PostgresPurge
from taskq.stores.postgres_rate import PostgresStartLimits
from taskq.stores.postgres_schedules import PostgresSchedules
from taskq.stores.postgres_schema import quote, schema_name
from taskq.stores.postgres_workflows import PostgresWorkflows
from taskq.urls import mask_url

if TYPE_CHECKING:
    import asyncpg
    from asyncpg.pool import PoolConnectionProxy

log = get_logger(__name__)


class PostgresStore(
    PostgresPurge,
    PostgresWorkflows,
    PostgresBroadcasts,
    PostgresStartLimits,
    PostgresSchedules,
    PostgresListing,
    StatusStore,
):
    """Task records in PostgreSQL, in the schema ``schema`` (default: named after the
    app's exchange, :func:`~taskq.stores.postgres_schema.schema_name`), shared by every
    process that points at the same database and schema. The schema is created or
    migrated on connect; ``taskq store migrate`` does it ahead of time, for apps whose
    database user may not create tables (they then only read ``schema_version``)."""

    def __init__(
        self,
        url: str,
        *,
        ttl: float | None = DEFAULT_TTL,
        prefix: str = "taskq",
        schema: str | None = None,
    ) -> None:
        super().__init__(ttl=ttl)
        self.display_url = mask_url(url)
        #: The PostgreSQL schema holding this store's tables (unquoted).
        self.schema = schema or schema_name(prefix)
        self._url = url
        self._dsn, self._connect_timeout = driver_options(url)
        #: Seconds a call may take before it fails with StoreError.
        self.timeout = OPERATION_TIMEOUT
        self._pool: asyncpg.Pool | None = None
        self._purger: asyncio.Task[None] | None = None
        self._s = quote(self.schema)

    # -- life cycle -----------------------------------------------------------------

    async def connect(self) -> None:
        if self._pool is not None:
            return
        async with self._errors():
            pool = await open_pool(self._url, dsn=self._dsn, connect_timeout=self._connect_timeout)
        try:
            async with self._errors(), acquired(pool, self.timeout) as conn:
                await migrate(conn, self.schema)
        except BaseException:
            pool.terminate()
            raise
        if self._pool is not None:  # a concurrent connect() won the race; keep its pool
            pool.terminate()
            return
        self._pool = pool
        if self.ttl is not None:
            self._purger = asyncio.get_running_loop().create_task(self._purge_forever())
        log.debug("store connected", store=self.display_url, schema=self.schema)

    async def migrate(self) -> Migration:
        """Bring the schema to the latest version on a connection of its own (``taskq
        store migrate``)."""
        import asyncpg

        async with self._errors():
            conn = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, statement_cache_size=0
            )
            try:
                before, after = await migrate(conn, self.schema)
            finally:
                await conn.close()
        return Migration(self.schema, before, after)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        purger, self._purger = self._purger, None
        if purger is not None:
            purger.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purger
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), timeout=self.timeout)
            except (TimeoutError, OSError):
                pool.terminate()
            log.debug("store closed", store=self.display_url)

    # -- records --------------------------------------------------------------------

    async def get(self, task_id: str) -> TaskStatus | None:
        row = await self._fetchrow(
            f"SELECT * FROM {self._s}.tasks WHERE id = $1"
            " AND (expires_at IS NULL OR expires_at > now())",
            task_id,
        )
        return None if row is None else self._decode(row)

    async def get_many(self, task_ids: Sequence[str]) -> list[TaskStatus | None]:
        """One query for all: a poller's thousand gets were a thousand statements, and
        the bench's own polling took PostgreSQL's CPU from the workers it measured."""
        if not task_ids:
            return []
        rows = await self._fetch(
            f"SELECT * FROM {self._s}.tasks WHERE id = ANY($1::text[])"
            " AND (expires_at IS NULL OR expires_at > now())",
            list(task_ids),
        )
        found = {row["id"]: self._decode(row) for row in rows}
        return [found.get(task_id) for task_id in task_ids]

    async def discard(self, task_id: str) -> bool:
        row = await self._fetchrow(
            f"DELETE FROM {self._s}.tasks WHERE id = $1 AND state = $2 AND attempts = 0"
            " AND (expires_at IS NULL OR expires_at > now()) RETURNING id",
            task_id,
            TaskState.QUEUED.value,
        )
        return row is not None

    async def cancel(self, task_id: str) -> TaskStatus | None:
        row = await self._fetchrow(f"SELECT * FROM {self._s}.cancel($1, $2)", task_id, self.ttl)
        return self._written(row)

    async def refuse_cancel(self, task_id: str) -> bool:
        row = await self._fetchrow(
            f"UPDATE {self._s}.tasks SET cancel_requested = false"
            " WHERE id = $1 AND cancel_requested"
            " AND (expires_at IS NULL OR expires_at > now()) RETURNING id",
            task_id,
        )
        return row is not None

    async def reset(self, task_id: str, name: str) -> TaskStatus:
        row = await self._fetchrow(
            f"SELECT * FROM {self._s}.reset($1, $2, $3)", task_id, name, self.ttl
        )
        status = self._written(row)
        if status is None:
            raise StoreError(f"the reset of task {task_id} in {self.display_url} wrote nothing")
        return status

    async def recent(
        self, *, name: str | None = None, state: TaskState | None = None, limit: int = 20
    ) -> list[TaskStatus]:
        return await self.find_tasks(TaskFilter(name=name, state=state), limit=limit)

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
        row = await self._fetchrow(
            f"SELECT * FROM {self._s}.write($1, $2, $3, $4, $5, $6, $7, $8)",
            *self._write_args(write),
            self.ttl,
        )
        return self._written(row)

    async def write_many(self, writes: Sequence[Write]) -> list[TaskStatus | None]:
        """One call of ``write_many()`` with one array per argument: one round trip."""
        rows = await self._write_rows(writes, "*")
        return [self._written(row) for row in rows]

    async def move_many(self, writes: Sequence[Write]) -> list[Moved | None]:
        """Only each record's state and attempts come back: no result, error or call
        to send and decode for a worker's moves."""
        rows = await self._write_rows(writes, "id, state, attempts")
        return [
            None if row["id"] is None else Move(TaskState(row["state"]), row["attempts"])
            for row in rows
        ]

    async def create_many(self, items: Sequence[Create]) -> list[bool]:
        """Only whether each record was written comes back: a sender needs no more."""
        writes = [
            Write(item[0], item[1], TaskState.QUEUED, only_if_absent=True, call=call_of(item))
            for item in items
        ]
        return [row["id"] is not None for row in await self._write_rows(writes, "id")]

    async def _write_rows(self, writes: Sequence[Write], columns: str) -> list[Any]:
        """The rows ``write_many()`` answers for ``writes`` (their ``columns``), in the
        order of ``writes``.

        The batch is one transaction, whose row locks are held until it commits: two
        batches locking the same rows in opposite orders (a publisher's creates and a
        worker's starts of tasks with generated ids) deadlocked, and PostgreSQL aborted
        one. So the writes are sent in task id order (a stable sort: the writes of one
        id keep theirs), which every batch shares, and their rows put back."""
        if not writes:
            return []
        order = sorted(range(len(writes)), key=lambda i: writes[i].task_id)
        # Encoded before anything is sent: a result JSON cannot carry fails the call.
        arrays = list(zip(*(self._write_args(writes[i]) for i in order), strict=True))
        rows = await self._fetch(
            f"SELECT {columns} FROM {self._s}.write_many($1, $2, $3, $4, $5, $6, $7, $8)",
            *(list(array) for array in arrays),
            self.ttl,
        )
        if len(rows) != len(writes):
            raise StoreError(
                f"status store {self.display_url} answered {len(rows)} of {len(writes)} writes"
            )
        in_order: list[Any] = [None] * len(writes)
        for position, row in zip(order, rows, strict=True):
            in_order[position] = row
        return in_order

    @staticmethod
    def _write_args(write: Write) -> tuple[Any, ...]:
        result, error = write.result, write.error
        return (
            write.task_id,
            write.name,
            write.state.value,
            write.only_if_absent,
            None if result is NO_RESULT else to_json(result, what="a task result").decode(),
            None if error is None else error.model_dump_json(),
            write.call,
        )

    def _written(self, row: Any) -> TaskStatus | None:
        """A function's row: the record, or all NULLs when the write was refused."""
        if row is None or row["id"] is None:
            return None
        return self._decode(row)

    def _decode(self, row: Any) -> TaskStatus:
        try:
            return TaskStatus(
                id=row["id"],
                name=row["name"],
                state=row["state"],
                attempts=row["attempts"],
                result=None if row["result"] is None else json.loads(row["result"]),
                error=None if row["error"] is None else ErrorInfo.model_validate_json(row["error"]),
                created_at=row["created_at"],
                started_at=row["started_at"],
                finished_at=row["finished_at"],
                cancel_requested=row["cancel_requested"],
                **read_call(row["call"]).as_fields(),
            )
        except ValueError as exc:  # JSONDecodeError and ValidationError both are
            raise StoreError(
                f"unreadable record of task {row['id']} in {self.display_url}: {exc}"
            ) from exc

    # -- plumbing -------------------------------------------------------------------

    @property
    def _connected_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(f"store {self.display_url} is not connected: call connect() first")
        return self._pool

    def _errors(self) -> contextlib.AbstractAsyncContextManager[None]:
        return store_errors(self._url, self.display_url, self._error_listeners)

    @asynccontextmanager
    async def _conn_for_call(self) -> AsyncIterator[PoolConnectionProxy]:
        async with self._errors(), acquired(self._connected_pool, self.timeout) as conn:
            yield conn

    async def _fetch(self, sql: str, *args: Any) -> list[Any]:
        async with self._conn_for_call() as conn:
            return list(await conn.fetch(sql, *args))

    async def _fetchrow(self, sql: str, *args: Any) -> Any:
        async with self._conn_for_call() as conn:
            return await conn.fetchrow(sql, *args)
