"""How a task record is written to and read from Redis: the write script's arguments
and a record's fields. Apart from :mod:`taskq.stores.redis` because the bench's ceiling
consumer builds exactly the worker's writes with them."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from taskq.call_record import read_call
from taskq.errors import StoreError
from taskq.message import to_json
from taskq.status import TaskStatus
from taskq.stores.base import NO_RESULT, Write

#: The arguments a batch of writes shares (:meth:`RedisStore._stamp`): now (ISO-8601),
#: ttl in ms, and the index's score, expired-before and size to keep.
Stamp = tuple[str, str, str, str, str]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def micros(moment: datetime) -> int:
    """Microseconds since the epoch, exactly (a float timestamp rounds them)."""
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def write_args(write: Write, stamp: Stamp, *, record: bool = False) -> list[str]:
    """_WRITE's ARGV for ``write`` at ``stamp`` (``RedisStore._stamp``). The script
    answers the whole record with ``record=True``, else the state and attempts
    only: all a worker's move or a create reads of it."""
    result, error = write.result, write.error
    now, ttl, score, expired_before, keep = stamp
    return [
        write.state.value,
        write.name,
        now,
        ttl,
        "1" if write.only_if_absent else "0",
        "" if result is NO_RESULT else to_json(result, what="a task result").decode(),
        "" if error is None else error.model_dump_json(),
        write.task_id,
        score,
        expired_before,
        keep,
        write.call or "",
        "" if record else "1",
    ]


def decode(task_id: str, fields: dict[str, str], where: str) -> TaskStatus:
    """A record's HASH fields as a :class:`TaskStatus`; ``where`` (the store, masked)
    names it in the error for a record that does not read."""
    # Only the fields the record has: a worker's move (no result, error nor call)
    # validates in half the time of one with every optional field spelled out.
    data: dict[str, Any] = dict(fields)
    data["id"] = task_id
    try:
        if "result" in fields:
            data["result"] = json.loads(fields["result"])
        if "error" in fields:
            data["error"] = json.loads(fields["error"])
        if "call" in fields:
            del data["call"]
            data.update(read_call(fields["call"]).as_fields())
        return TaskStatus.model_validate(data)
    except ValueError as exc:  # JSONDecodeError and ValidationError both are
        raise StoreError(f"unreadable record of task {task_id} in {where}: {exc}") from exc
