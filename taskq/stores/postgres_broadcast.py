"""The broadcast records of :class:`~taskq.stores.postgres.PostgresStore` (see
:mod:`taskq.stores.broadcast_base`): table ``<schema>.worker_tasks``, one row per call
and worker.

A worker's move is one short transaction: the call's record read ``FOR SHARE`` (a
concurrent cancel, an ``UPDATE`` of that row, waits for it, and it for the cancel), the
worker's row locked (a transaction-level advisory lock on its key covers a row that
does not exist yet), the move decided by the same rules as the memory store's
(:func:`~taskq.stores.broadcast_base.next_worker_status`) and written. Not on any hot
path: one call per worker per broadcast.
"""

from __future__ import annotations

import json
from typing import Any

from taskq.message import to_json
from taskq.status import ErrorInfo, TaskState, TaskStatus
from taskq.stores.broadcast_base import BroadcastRecords, next_worker_status
from taskq.stores.postgres_mixin import LIVE, PostgresPart, expires


class PostgresBroadcasts(PostgresPart, BroadcastRecords):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    async def worker_transition(
        self,
        task_id: str,
        worker_id: str,
        name: str,
        state: TaskState,
        *,
        result: Any = None,
        error: ErrorInfo | None = None,
    ) -> TaskStatus | None:
        if state is TaskState.SUCCEEDED:  # as it comes back; a bad one fails here
            result = json.loads(to_json(result, what="a task result"))
        s = self._s
        async with self._conn_for_call() as conn, conn.transaction():
            call_state = await conn.fetchval(
                f"SELECT state FROM {s}.tasks WHERE id = $1 AND {LIVE} FOR SHARE", task_id
            )
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                f"taskq:{s}:{task_id}:{worker_id}",
            )
            row = await conn.fetchrow(
                f"SELECT * FROM {s}.worker_tasks WHERE task_id = $1 AND worker = $2 AND {LIVE}",
                task_id,
                worker_id,
            )
            status = next_worker_status(
                None if row is None else _decode(row),
                task_id=task_id,
                worker_id=worker_id,
                name=name,
                state=state,
                call_cancelled=call_state == TaskState.CANCELLED.value,
                now=await conn.fetchval("SELECT now()"),
                result=result,
                error=error,
            )
            if status is None:
                return None
            await conn.execute(
                f"INSERT INTO {s}.worker_tasks AS w (task_id, worker, name, state, attempts,"
                " result, error, created_at, started_at, finished_at, expires_at)"
                f" VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, {expires(11)})"
                " ON CONFLICT (task_id, worker) DO UPDATE SET name = excluded.name,"
                " state = excluded.state, attempts = excluded.attempts,"
                " result = excluded.result, error = excluded.error,"
                " created_at = excluded.created_at, started_at = excluded.started_at,"
                " finished_at = excluded.finished_at, expires_at = excluded.expires_at",
                task_id,
                worker_id,
                status.name,
                status.state.value,
                status.attempts,
                to_json(status.result, what="a task result").decode(),
                None if status.error is None else status.error.model_dump_json(),
                status.created_at,
                status.started_at,
                status.finished_at,
                self.ttl,
            )
        return status

    async def worker_statuses(self, task_id: str) -> dict[str, TaskStatus]:
        rows = await self._fetch(
            f"SELECT * FROM {self._s}.worker_tasks WHERE task_id = $1 AND {LIVE}", task_id
        )
        return {row["worker"]: _decode(row) for row in rows}


def _decode(row: Any) -> TaskStatus:
    return TaskStatus(
        id=row["task_id"],
        worker=row["worker"],
        name=row["name"],
        state=row["state"],
        attempts=row["attempts"],
        result=None if row["result"] is None else json.loads(row["result"]),
        error=None if row["error"] is None else ErrorInfo.model_validate_json(row["error"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
