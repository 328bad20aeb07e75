"""A task's call (its ``args`` and ``kwargs``) kept in its ``queued`` record, so that a
task's page can show its arguments and "Send again" can reuse them after the message
is gone (run, purged, or never dead-lettered).

The publisher writes the call in the same store write that creates the ``queued``
record (one script call, one pipeline for ``send_many``): no round trip of its own.
It is a slice of the message body already encoded, not a second encoding, so it costs
the sender a copy of at most :data:`CALL_LIMIT` bytes. A call over that limit is not
kept: the record holds the marker ``{"truncated": true, "bytes": N}`` instead, so a
big payload does not bloat the store. A task published by another language has no
``queued`` record, hence no call: its page says the arguments are unknown.

Stored as JSON text, ``{"args": [...], "kwargs": {...}}`` (Redis: the hash field
``call``), read back as :attr:`TaskStatus.args`, :attr:`TaskStatus.kwargs` and
:attr:`TaskStatus.call_truncated`.
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from taskq.message import to_json

#: The most bytes of a call's JSON a record keeps; a bigger one is kept as a marker.
CALL_LIMIT = 4096

_HEAD = b'{"id":'
# Inside a JSON string every '"' is escaped, so the first ',"args":' of a body whose
# id and task come first (both strings) is the key itself.
_ARGS_KEY = b',"args":'


def call_of_body(body: bytes) -> str | None:
    """The call's JSON from a body :meth:`TaskMessage.encode` wrote without a workflow
    (``{"id", "task", "args", "kwargs"}`` in that order): ``{"args":...,"kwargs":...}``,
    or the truncation marker past :data:`CALL_LIMIT`. ``None`` for a body of another
    shape (nothing kept rather than something wrong)."""
    start = body.find(_ARGS_KEY)
    if start < 0 or not body.startswith(_HEAD):
        return None
    size = len(body) - start  # '{' + the rest after the comma
    if size > CALL_LIMIT:
        return json.dumps({"truncated": True, "bytes": size}, separators=(",", ":"))
    return "{" + body[start + 1 :].decode()


def call_of(args: Any, kwargs: Any) -> str | None:
    """The call's JSON from decoded arguments (a workflow step's), capped the same way."""
    text = to_json({"args": args, "kwargs": kwargs}, what="a task's arguments")
    if len(text) > CALL_LIMIT:
        return json.dumps({"truncated": True, "bytes": len(text)}, separators=(",", ":"))
    return text.decode()


class Arguments(NamedTuple):
    """A stored call as :class:`~taskq.status.TaskStatus` fields."""

    args: list[Any] | None
    kwargs: dict[str, Any] | None
    call_truncated: int | None

    def as_fields(self) -> dict[str, Any]:
        return self._asdict()


NO_ARGUMENTS = Arguments(None, None, None)


def read_call(text: str | None) -> Arguments:
    """The stored call's arguments; :data:`NO_ARGUMENTS` for none or an unreadable one
    (a record's other fields stay worth showing)."""
    if not text:
        return NO_ARGUMENTS
    try:
        data = json.loads(text)
    except ValueError:
        return NO_ARGUMENTS
    if not isinstance(data, dict):
        return NO_ARGUMENTS
    if data.get("truncated") is True:
        size = data.get("bytes")
        return Arguments(None, None, size if isinstance(size, int) else 0)
    args, kwargs = data.get("args"), data.get("kwargs")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return NO_ARGUMENTS
    return Arguments(args, kwargs, None)
