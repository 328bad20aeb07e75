"""The broadcast records of :class:`~taskq.stores.redis.RedisStore` (see
:mod:`taskq.stores.broadcast_base`), each write one Lua script.

Key ``{prefix}:broadcast:{task id}``: a HASH with one field per worker that ran the
call, named by its worker id, whose value is that worker's record as a JSON object
(the fields of :class:`~taskq.status.TaskStatus`: ``id``, ``name``, ``worker``,
``state``, ``attempts``, ``created_at``, ``started_at``, ``finished_at``, ``error``,
``result``). It expires ``ttl`` after its last write, as task records do. The script
reads the call's own record (``{prefix}:task:{task id}``) in the same step.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskq.errors import StoreError
from taskq.message import to_json
from taskq.status import TRANSITIONS, ErrorInfo, TaskState, TaskStatus, utcnow


def _lua(state: TaskState | str) -> str:
    return json.dumps(str(state))


def _transitions() -> str:
    """``TRANSITIONS`` as a Lua table; ``''`` stands for "no record yet"."""
    rows = []
    for current, allowed in TRANSITIONS.items():
        targets = ", ".join(f"[{_lua(s)}] = true" for s in sorted(allowed))
        rows.append(f"[{_lua('' if current is None else current)}] = {{{targets}}}")
    return "{" + ", ".join(rows) + "}"


_STARTED, _RETRYING = _lua(TaskState.STARTED), _lua(TaskState.RETRYING)
_SUCCEEDED, _CANCELLED = _lua(TaskState.SUCCEEDED), _lua(TaskState.CANCELLED)
_FINAL = "{" + ", ".join(f"[{_lua(s)}] = true" for s in TaskState if s.finished) + "}"

# KEYS[1]: the call's worker records, KEYS[2]: the call's own record. ARGV: worker id,
# target state, task id, task name, now (ISO-8601), ttl in ms ('' for none), result JSON
# and error JSON ('' for none). Returns the worker's record as written (JSON), or false
# when the move is refused. The result is spliced in as its JSON text, never decoded
# here: cjson would turn [] into {} and round numbers. It is written with `succeeded`
# only, after which the record never changes, so it is never decoded again either.
_WORKER_WRITE = f"""
local ALLOWED = {_transitions()}
local FINAL = {_FINAL}
local worker, to, id, name, now, ttl, result, err = unpack(ARGV, 1, 8)
local raw = redis.call('HGET', KEYS[1], worker)
local record = nil
local current = ''
if raw then
  record = cjson.decode(raw)
  current = record.state
end
local forced = false
if (to == {_STARTED} or to == {_RETRYING}) and
   redis.call('HGET', KEYS[2], 'state') == {_CANCELLED} then
  to = {_CANCELLED}
  forced = true
end
if not (forced and current == '') then
  local allowed = ALLOWED[current]
  if not allowed or not allowed[to] then return false end
end
if not record then
  record = {{id = id, name = name, worker = worker, attempts = 0, created_at = now}}
end
record.state = to
if to == {_STARTED} then
  record.attempts = record.attempts + 1
  record.started_at = now
end
if to == {_SUCCEEDED} then
  record.error = nil
elseif err ~= '' then
  record.error = cjson.decode(err)
end
if FINAL[to] then record.finished_at = now end
local out = cjson.encode(record)
if result ~= '' and to == {_SUCCEEDED} then
  out = string.sub(out, 1, -2) .. ',"result":' .. result .. '}}'
end
redis.call('HSET', KEYS[1], worker, out)
if ttl ~= '' then redis.call('PEXPIRE', KEYS[1], ttl) end
return out
"""


class RedisBroadcasts:
    """Mixed into :class:`~taskq.stores.redis.RedisStore`, which gives ``prefix``, its
    client, its ttl argument, its record keys and its one error boundary."""

    prefix: str
    _broadcast_script: tuple[Redis, AsyncScript] | None = None

    # Given by RedisStore (which comes first in the method resolution order).
    def _errors(self) -> AbstractContextManager[None]:
        raise NotImplementedError

    def _ttl_ms(self) -> str:
        raise NotImplementedError

    def _key(self, task_id: str) -> str:
        raise NotImplementedError

    @property
    def _connection(self) -> Any:
        raise NotImplementedError

    def _worker_script(self) -> tuple[Redis, AsyncScript]:
        client = cast(Redis, self._connection.client)
        script = self._broadcast_script
        if script is None or script[0] is not client:
            script = self._broadcast_script = (client, client.register_script(_WORKER_WRITE))
        return script

    def _workers_key(self, task_id: str) -> str:
        return f"{self.prefix}:broadcast:{task_id}"

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
        encoded = ""
        if state is TaskState.SUCCEEDED:
            encoded = to_json(result, what="a task result").decode()
        _, write = self._worker_script()
        args = [
            worker_id,
            state.value,
            task_id,
            name,
            utcnow().isoformat(),
            self._ttl_ms(),
            encoded,
            "" if error is None else error.model_dump_json(),
        ]
        keys = [self._workers_key(task_id), self._key(task_id)]
        with self._errors():
            reply = await write(keys=keys, args=args)
        return None if not reply else _decode(task_id, worker_id, reply)

    async def worker_statuses(self, task_id: str) -> dict[str, TaskStatus]:
        client, _ = self._worker_script()
        with self._errors():
            found = cast(dict[str, str], await client.hgetall(self._workers_key(task_id)))
        return {worker: _decode(task_id, worker, raw) for worker, raw in sorted(found.items())}


def _decode(task_id: str, worker_id: str, raw: str) -> TaskStatus:
    try:
        return TaskStatus.model_validate_json(raw)
    except ValueError as exc:
        raise StoreError(
            f"unreadable record of worker {worker_id} for broadcast {task_id}: {exc}"
        ) from exc
