"""The workflow records of :class:`~taskq.stores.postgres.PostgresStore` (see
:mod:`taskq.stores.workflow_base`), each write one statement.

- ``<schema>.workflows``: one row per workflow (state, definition JSON, error JSON,
  failed step, times); created by ``INSERT ... ON CONFLICT`` (over an expired row only),
  finished by ``UPDATE ... WHERE state = 'running'``: the first final state wins.
- ``<schema>.joins``: one row per group, its member set (an ``integer[]``, each member
  once) and the member that claimed the fire, written by one ``INSERT ... ON CONFLICT DO
  UPDATE``, which locks the row: members finishing together are counted one after the
  other, never two on the same stale count.

Rows expire ``ttl`` after their last write, as task records do.
"""

from __future__ import annotations

import json
from typing import Any

from taskq.errors import StoreError
from taskq.message import to_json
from taskq.status import ErrorInfo
from taskq.stores.postgres_mixin import LIVE, PostgresPart, expires
from taskq.stores.workflow_base import WorkflowRecord, WorkflowRecords, WorkflowState

_RUNNING = WorkflowState.RUNNING.value


class PostgresWorkflows(PostgresPart, WorkflowRecords):
    """Mixed into :class:`~taskq.stores.postgres.PostgresStore`."""

    async def create_workflow(self, workflow_id: str, definition: dict[str, Any]) -> bool:
        body = to_json(definition, what="a workflow definition").decode()
        row = await self._fetchrow(
            f"INSERT INTO {self._s}.workflows AS w (id, state, definition, created_at,"
            f" expires_at) VALUES ($1, '{_RUNNING}', $2, now(), {expires(3)})"
            " ON CONFLICT (id) DO UPDATE SET state = excluded.state,"
            " definition = excluded.definition, error = NULL, failed_step = NULL,"
            " created_at = excluded.created_at, finished_at = NULL,"
            " expires_at = excluded.expires_at"
            " WHERE w.expires_at <= now() RETURNING 1",
            workflow_id,
            body,
            self.ttl,
        )
        return row is not None

    async def get_workflow(
        self, workflow_id: str, *, definition: bool = True
    ) -> WorkflowRecord | None:
        shape = "definition" if definition else "NULL AS definition"
        row = await self._fetchrow(
            f"SELECT state, {shape}, error, failed_step, created_at, finished_at"
            f" FROM {self._s}.workflows WHERE id = $1 AND {LIVE}",
            workflow_id,
        )
        if row is None:
            return None
        try:
            return WorkflowRecord(
                id=workflow_id,
                state=WorkflowState(row["state"]),
                definition=None if row["definition"] is None else json.loads(row["definition"]),
                error=None if row["error"] is None else ErrorInfo.model_validate_json(row["error"]),
                failed_step=row["failed_step"],
                created_at=row["created_at"],
                finished_at=row["finished_at"],
            )
        except ValueError as exc:
            raise StoreError(f"unreadable record of workflow {workflow_id}: {exc}") from exc

    async def _finish_workflow(
        self,
        workflow_id: str,
        state: WorkflowState,
        *,
        error: ErrorInfo | None,
        failed_step: str | None,
    ) -> bool:
        row = await self._fetchrow(
            f"UPDATE {self._s}.workflows SET state = $2, finished_at = now(), error = $3,"
            f" failed_step = $4, expires_at = {expires(5)}"
            f" WHERE id = $1 AND state = '{_RUNNING}' AND {LIVE} RETURNING 1",
            workflow_id,
            state.value,
            None if error is None else error.model_dump_json(),
            failed_step,
            self.ttl,
        )
        return row is not None

    async def join_member(self, workflow_id: str, group: str, member: int, size: int) -> bool:
        # $3: the member, $4: the group's size. An expired row starts afresh.
        row = await self._fetchrow(
            f"INSERT INTO {self._s}.joins AS j (workflow_id, grp, members, fired_by,"
            f" expires_at) VALUES ($1, $2, ARRAY[$3::integer],"
            f" CASE WHEN $4::integer <= 1 THEN $3::integer END, {expires(5)})"
            " ON CONFLICT (workflow_id, grp) DO UPDATE SET"
            " members = CASE WHEN j.expires_at <= now() THEN excluded.members"
            "  WHEN $3::integer = ANY(j.members) THEN j.members"
            "  ELSE j.members || $3::integer END,"
            " fired_by = CASE WHEN j.expires_at <= now() THEN excluded.fired_by"
            "  WHEN j.fired_by IS NOT NULL THEN j.fired_by"
            "  WHEN cardinality(j.members)"
            "   + CASE WHEN $3::integer = ANY(j.members) THEN 0 ELSE 1 END >= $4::integer"
            "  THEN $3::integer END,"
            " expires_at = excluded.expires_at"
            " RETURNING coalesce(fired_by = $3::integer, false) AS fires",
            workflow_id,
            group,
            member,
            size,
            self.ttl,
        )
        return bool(row["fires"])
