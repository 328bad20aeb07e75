"""The Lua scripts of :class:`~taskq.stores.redis.RedisStore`, one per write of a task
record, each atomic: the state check and the write are one call. They carry the
transition table generated from :data:`taskq.status.TRANSITIONS`, never a copy by hand,
and index the record they write in ``{prefix}:recent`` (see :mod:`taskq.stores.redis`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from taskq.status import CANCELLABLE, TRANSITIONS, TaskState


def _lua_string(text: str) -> str:
    # A JSON string literal of plain ASCII is a valid Lua string literal.
    return json.dumps(text, ensure_ascii=True)


def _lua_set(states: Iterable[TaskState]) -> str:
    return "{" + ", ".join(f"[{_lua_string(s.value)}] = true" for s in sorted(states)) + "}"


def _lua_transitions() -> str:
    """``TRANSITIONS`` as a Lua table; ``''`` stands for "no record yet"."""
    rows = (
        f"[{_lua_string('' if current is None else current.value)}] = {_lua_set(allowed)}"
        for current, allowed in TRANSITIONS.items()
    )
    return "{" + ", ".join(rows) + "}"


# Indexes a record just written. KEYS[2]: the index; the last four ARGV: task id, score
# (now in µs since the epoch), the score below which records have expired ('' when they
# never do), entries to keep. Scores are computed in Python: Lua 5.1 prints numbers
# this large with 14 digits.
_INDEX = """
local function index(idx, id, score, expired_before, keep)
  redis.call('ZADD', idx, score, id)
  if expired_before ~= '' then
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. expired_before)
  end
  redis.call('ZREMRANGEBYRANK', idx, 0, -tonumber(keep) - 1)
end
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: target state, task name, now
# (ISO-8601), ttl in ms ('' for none), '1' to write only if there is no record
# (create), result JSON and error JSON ('' for "leave as it is"), then _INDEX's four,
# then the call's JSON ('' for none: taskq.call_record), kept by the write that creates
# the record, or by a refused create in a record of that name that has none. Returns
# the record after the write (HGETALL; without its call unless this write carries one),
# or with ARGV[13] '1' only its state and attempts (a worker's move, a create: a whole
# record read back and parsed was a tenth of a draining worker's CPU), or false when the
# move is refused (nothing written but that call).
_WRITE = f"""{_INDEX}
local ALLOWED = {_lua_transitions()}
local FINAL = {_lua_set(s for s in TaskState if s.finished)}
local key = KEYS[1]
local to, name, now, ttl, only_new, result, err = unpack(ARGV, 1, 7)
local call = ARGV[12]
local current = redis.call('HGET', key, 'state') or ''
if only_new == '1' and current ~= '' then
  if call ~= '' and redis.call('HGET', key, 'name') == name then
    redis.call('HSETNX', key, 'call', call)
  end
  return false
end
local allowed = ALLOWED[current]
if not allowed or not allowed[to] then return false end
if current == '' then
  redis.call('HSET', key, 'name', name, 'attempts', 0, 'created_at', now)
  if call ~= '' then redis.call('HSET', key, 'call', call) end
end
if current == {_lua_string(TaskState.STARTED)} and
   (to == {_lua_string(TaskState.STARTED)} or to == {_lua_string(TaskState.RETRYING)}) and
   redis.call('HEXISTS', key, 'cancel_requested') == 1 then
  to = {_lua_string(TaskState.CANCELLED)}
end
if to ~= {_lua_string(TaskState.STARTED)} then redis.call('HDEL', key, 'cancel_requested') end
redis.call('HSET', key, 'state', to)
if to == {_lua_string(TaskState.STARTED)} then
  redis.call('HINCRBY', key, 'attempts', 1)
  redis.call('HSET', key, 'started_at', now)
end
if result ~= '' then redis.call('HSET', key, 'result', result) end
if to == {_lua_string(TaskState.SUCCEEDED)} then
  redis.call('HDEL', key, 'error')
elseif err ~= '' then
  redis.call('HSET', key, 'error', err)
end
if FINAL[to] then redis.call('HSET', key, 'finished_at', now) end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 8, 11))
if ARGV[13] == '1' then return redis.call('HMGET', key, 'state', 'attempts') end
local all = redis.call('HGETALL', key)
if call ~= '' then return all end
-- A worker's move: the call (the arguments, up to 4 KiB) is not sent back; the writer
-- has the message, and decoding it twice a task cost the worker ~10 us of CPU.
local out = {{}}
for i = 1, #all, 2 do
  if all[i] ~= 'call' then
    out[#out + 1] = all[i]
    out[#out + 1] = all[i + 1]
  end
end
return out
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: now (ISO-8601), ttl in ms ('' for
# none), then _INDEX's four. StatusStore.cancel: queued / retrying -> cancelled, started
# -> marked cancel_requested, anything else unchanged. Returns the record (HGETALL), or
# false when there is none.
_CANCEL = f"""{_INDEX}
local key = KEYS[1]
local now, ttl = unpack(ARGV, 1, 2)
local current = redis.call('HGET', key, 'state')
if not current then return false end
local CANCELLABLE = {_lua_set(CANCELLABLE)}
if CANCELLABLE[current] then
  redis.call('HSET', key, 'state', {_lua_string(TaskState.CANCELLED)}, 'finished_at', now)
elseif current == {_lua_string(TaskState.STARTED)} then
  redis.call('HSET', key, 'cancel_requested', 1)
else
  return redis.call('HGETALL', key)
end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 3, 6))
return redis.call('HGETALL', key)
"""

# KEYS[1]: the record, KEYS[2]: the index; ARGV[1]: the task id. Deletes the record
# (and its index entry) only while queued with no attempt; returns 1 if it did.
_DISCARD = f"""
local key = KEYS[1]
local fields = redis.call('HMGET', key, 'state', 'attempts')
if fields[1] == {_lua_string(TaskState.QUEUED)} and (tonumber(fields[2]) or 0) == 0 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  return redis.call('DEL', key)
end
return 0
"""

# KEYS[1]: the record, KEYS[2]: the index. ARGV: task name, now (ISO-8601), ttl in ms
# ('' for none), then _INDEX's four. An operator's reset, not a move: whatever the
# state, the record becomes a fresh `queued` one (created_at and call kept). Returns the record
# (HGETALL).
_RESET = f"""{_INDEX}
local key = KEYS[1]
local name, now, ttl = unpack(ARGV, 1, 3)
local created = redis.call('HGET', key, 'created_at') or now
local call = redis.call('HGET', key, 'call')
redis.call('DEL', key)
redis.call('HSET', key, 'state', {_lua_string(TaskState.QUEUED)}, 'name', name,
           'attempts', 0, 'created_at', created)
if call then redis.call('HSET', key, 'call', call) end
if ttl ~= '' then redis.call('PEXPIRE', key, ttl) end
index(KEYS[2], unpack(ARGV, 4, 7))
return redis.call('HGETALL', key)
"""

# KEYS[1]: the index. ARGV: first and last rank to look at (newest first), the record
# keys' prefix, task name and state wanted ('' for any), matches wanted. Returns the
# number of entries looked at and the matching task ids, newest first. Filtering here,
# not in Python, reads a page in one round trip and sends back only the matches. It
# reads records it cannot name in KEYS: fine on one Redis, as taskq's keys are.
_RECENT = """
local first, last, key_prefix, name, state, wanted = unpack(ARGV)
local ids = redis.call('ZREVRANGE', KEYS[1], first, last)
local found = {}
for _, id in ipairs(ids) do
  local fields = redis.call('HMGET', key_prefix .. id, 'name', 'state')
  if fields[2] and (name == '' or fields[1] == name) and (state == '' or fields[2] == state) then
    found[#found + 1] = id
    if #found >= tonumber(wanted) then break end
  end
end
return {#ids, found}
"""
