"""The workflow records of :class:`~taskq.stores.redis.RedisStore` (see
:mod:`taskq.stores.workflow_base`), each write one Lua script.

Keys, beside the task records (``{prefix}:task:{id}``):

- ``{prefix}:workflow:{id}``: a HASH, fields ``state``, ``definition`` (JSON),
  ``created_at``, ``finished_at``, ``error`` (JSON) and ``failed_step``;
- ``{prefix}:workflow:{id}:join:{group path}``: a SET of the member indexes counted;
- ``{prefix}:workflow:{id}:fired:{group path}``: the member that claimed the fire.

All expire ``ttl`` after their last write, as task records do.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskq.errors import StoreError
from taskq.message import to_json
from taskq.status import ErrorInfo, utcnow
from taskq.stores.workflow_base import WorkflowRecord, WorkflowRecords, WorkflowState

_RUNNING = json.dumps(WorkflowState.RUNNING.value)

# KEYS[1]: the record. ARGV: definition JSON, now (ISO-8601), ttl in ms ('' for none).
_CREATE = f"""
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'state', {_RUNNING}, 'definition', ARGV[1], 'created_at', ARGV[2])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1]: the record. ARGV: final state, now, ttl in ms ('' for none), error JSON and
# failed step ('' for none). Only a running record moves; the first final state wins.
_FINISH = f"""
if redis.call('HGET', KEYS[1], 'state') ~= {_RUNNING} then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'finished_at', ARGV[2])
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'error', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'failed_step', ARGV[5]) end
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return 1
"""

# KEYS[1]: the join set, KEYS[2]: the fire claim. ARGV: member, group size, ttl in ms
# ('' for none). The member is counted in a set (once, however often it comes), and the
# fire claimed by the first member to see the set complete; returns 1 to the member
# holding the claim, every time it asks, and 0 to any other.
_JOIN = """
redis.call('SADD', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
if redis.call('SCARD', KEYS[1]) < tonumber(ARGV[2]) then return 0 end
redis.call('SET', KEYS[2], ARGV[1], 'NX')
if ARGV[3] ~= '' then redis.call('PEXPIRE', KEYS[2], ARGV[3]) end
if redis.call('GET', KEYS[2]) == ARGV[1] then return 1 end
return 0
"""


class RedisWorkflows(WorkflowRecords):
    """Mixed into :class:`~taskq.stores.redis.RedisStore`, which gives ``prefix``, its
    client, its ttl argument and its one error boundary."""

    prefix: str
    _workflow_scripts: tuple[Redis, AsyncScript, AsyncScript, AsyncScript] | None = None

    # Given by RedisStore (which comes first in the method resolution order).
    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _ttl_ms(self) -> str:
        raise NotImplementedError

    @property
    def _connection(self) -> Any:
        raise NotImplementedError

    def _workflow_client(self) -> Redis:
        return cast(Redis, self._connection.client)

    def _scripts(self) -> tuple[Redis, AsyncScript, AsyncScript, AsyncScript]:
        """The scripts, registered on the current client (no round trip: redis-py
        sends EVALSHA and loads a script the server does not know)."""
        client = self._workflow_client()
        scripts = self._workflow_scripts
        if scripts is None or scripts[0] is not client:
            create, finish, join = (client.register_script(s) for s in (_CREATE, _FINISH, _JOIN))
            scripts = self._workflow_scripts = (client, create, finish, join)
        return scripts

    def _workflow_key(self, workflow_id: str) -> str:
        return f"{self.prefix}:workflow:{workflow_id}"

    async def create_workflow(self, workflow_id: str, definition: dict[str, Any]) -> bool:
        body = to_json(definition, what="a workflow definition").decode()
        _, create, _, _ = self._scripts()
        args = [body, utcnow().isoformat(), self._ttl_ms()]
        with self._errors():
            return bool(await create(keys=[self._workflow_key(workflow_id)], args=args))

    async def get_workflow(
        self, workflow_id: str, *, definition: bool = True
    ) -> WorkflowRecord | None:
        client = self._workflow_client()
        fields = ["state", "created_at", "finished_at", "error", "failed_step"]
        if definition:
            fields.append("definition")
        with self._errors():
            values = await client.hmget(self._workflow_key(workflow_id), fields)
        found = dict(zip(fields, cast(list[str | None], values), strict=True))
        if found["state"] is None:
            return None
        try:
            return WorkflowRecord(
                id=workflow_id,
                state=WorkflowState(found["state"]),
                definition=json.loads(body) if (body := found.get("definition")) else None,
                error=ErrorInfo.model_validate_json(found["error"]) if found["error"] else None,
                failed_step=found["failed_step"],
                created_at=_time(found["created_at"]),
                finished_at=_time(found["finished_at"]),
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
        _, _, finish, _ = self._scripts()
        args = [
            state.value,
            utcnow().isoformat(),
            self._ttl_ms(),
            "" if error is None else error.model_dump_json(),
            failed_step or "",
        ]
        with self._errors():
            return bool(await finish(keys=[self._workflow_key(workflow_id)], args=args))

    async def join_member(self, workflow_id: str, group: str, member: int, size: int) -> bool:
        _, _, _, join = self._scripts()
        base = self._workflow_key(workflow_id)
        keys = [f"{base}:join:{group}", f"{base}:fired:{group}"]
        with self._errors():
            return bool(await join(keys=keys, args=[member, size, self._ttl_ms()]))


def _time(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)
