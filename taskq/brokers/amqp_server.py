"""What the RabbitMQ server we are connected to can do, read from its version.

The server names itself in ``connection.start`` (``server_properties``: ``product``
"RabbitMQ", ``version`` "3.10.8"). Only one choice depends on it so far: whether a
priority task's queue can stay a quorum queue. RabbitMQ 3.x quorum queues have no
priorities (only classic queues take ``x-max-priority``); 4.0 to 4.2 give quorum queues
two levels (priorities 0-4 normal, 5 and above high); 4.3 gives them 32 strict levels
(RABBITMQ-NOTES, "RabbitMQ 4.x"). A server we cannot read (another product, a version
string we do not know) is taken to have none: a classic priority queue works everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aio_pika.abc import AbstractConnection

_VERSION = re.compile(r"(\d+)\.(\d+)")

#: Quorum queue priority levels from each RabbitMQ version on (major, minor), newest
#: first; a version below all of them has none.
_QUORUM_PRIORITY_LEVELS: tuple[tuple[tuple[int, int], int], ...] = (
    ((4, 3), 32),
    ((4, 0), 2),
)


def server_version(properties: Mapping[str, Any]) -> tuple[int, int] | None:
    """``(major, minor)`` of a RabbitMQ server from its ``server_properties``; ``None``
    for another product or a version that does not read as one."""
    product = _text(properties.get("product"))
    version = _text(properties.get("version"))
    if product is None or "rabbitmq" not in product.lower() or version is None:
        return None
    found = _VERSION.match(version.strip())
    return (int(found[1]), int(found[2])) if found else None


def quorum_priority_levels(properties: Mapping[str, Any]) -> int | None:
    """Priority levels of the server's quorum queues; ``None`` when they have none."""
    version = server_version(properties)
    if version is None:
        return None
    for since, levels in _QUORUM_PRIORITY_LEVELS:
        if version >= since:
            return levels
    return None


def server_properties(connection: AbstractConnection) -> Mapping[str, Any]:
    """The ``server_properties`` of a connected aio-pika connection (empty when it has no
    transport: not connected yet, or reconnecting)."""
    transport = connection.transport
    if transport is None:
        return {}
    return transport.connection.server_properties or {}


def _text(value: Any) -> str | None:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return value if isinstance(value, str) else None
