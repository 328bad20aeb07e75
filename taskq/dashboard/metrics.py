"""The dashboard's ``/metrics``: queue gauges in Prometheus' text format, from the
latest poll (a scrape costs the broker nothing).

    taskq_queue_ready{queue="shop.emails.send"} 3
    taskq_queue_unacked{queue="shop.emails.send"} 1

``queue`` is the queue's name, ``<exchange>.<task>`` (and the dead-letter queue's).
``taskq_queue_unacked`` is left out for a queue whose broker cannot tell it (RabbitMQ
answers a passive declare with ready messages and consumers only). Two gauges do not
need a client library: the format is written here, label values escaped as it says.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_GAUGES = (
    ("taskq_queue_ready", "ready", "Messages waiting in the queue to be delivered."),
    ("taskq_queue_unacked", "unacked", "Messages delivered and not yet acknowledged."),
    ("taskq_queue_consumers", "consumers", "Consumers of the queue."),
)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(rows: Iterable[dict[str, Any]]) -> str:
    rows = [row for row in rows if row.get("exists")]
    lines: list[str] = []
    for metric, key, help_text in _GAUGES:
        lines += [f"# HELP {metric} {help_text}", f"# TYPE {metric} gauge"]
        for row in rows:
            value = row.get(key)
            if value is not None:
                lines.append(f'{metric}{{queue="{_escape(row["queue"])}"}} {value}')
    return "\n".join(lines) + "\n"
