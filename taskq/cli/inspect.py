"""``taskq queues``: how many tasks wait, how many are being run, and by how many
consumers, in each task queue and in the dead-letter queue.

    taskq queues workers.emails:app          # that app's task queues
    taskq queues --json                      # the queues bound to $TASKQ_EXCHANGE

Where the figures come from (the issue left it to us): RabbitMQ's management API when
it answers (``http://<broker host>:15672`` with the broker URL's credentials and vhost,
or ``--management-url``; with several broker nodes, the node this process is on), since
only it knows the unacked counts and which queues are bound to an exchange. Otherwise
passive declares of the queues we can name, which give ready messages and consumers but
not unacked (shown as ``-``, ``null`` in JSON), with a warning saying so; without
APP_PATH that is the dead-letter queue alone, as nothing else can be named.

``--json`` also gives each queue's ``type`` and, for a cluster, where it lives:
``leader`` (a quorum queue's leader, a classic queue's node) and ``members`` (a quorum
queue's replicas), from the management API. AMQP tells none of these: without the API,
``type`` is the type the app declares the queue as (what RabbitMQ would refuse any other
declaration of, so the queue's own while the app runs), and ``leader`` and ``members``
are ``null``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any

from taskq.app import TaskQueue
from taskq.brokers.amqp import AmqpBroker
from taskq.brokers.amqp_management import (
    MANAGEMENT_URL_ENV,
    ManagementUnavailable,
)
from taskq.brokers.base import QueueInfo
from taskq.cli.common import RET_OK, app_for, closing
from taskq.logs import get_logger

log = get_logger(__name__)


@dataclass(frozen=True)
class QueueRow:
    """One line of ``taskq queues``; its fields are the ``--json`` object's keys."""

    name: str
    #: The task whose queue it is; ``None`` for the dead-letter queue.
    task: str | None
    ready: int
    #: ``None`` when the broker could not tell (no management API).
    unacked: int | None
    consumers: int
    #: False for a task of the app whose queue nobody has declared yet (counts are 0).
    declared: bool = True
    #: ``quorum`` or ``classic``; ``None`` when neither the broker nor the app tells.
    type: str | None = None
    #: A quorum queue's leader node (a classic queue's node); ``None`` unless the
    #: management API tells.
    leader: str | None = None
    #: A quorum queue's member nodes; ``None`` unless the management API tells.
    members: list[str] | None = None


def register(
    commands: Any,
    *,
    logging_options: argparse.ArgumentParser,
) -> None:
    queues = commands.add_parser(
        "queues",
        parents=[logging_options],
        help="ready, unacked and consumers of each task queue and of the dead letters",
    )
    queues.add_argument(
        "app",
        nargs="?",
        metavar="APP_PATH",
        help="this app's task queues (default: the queues bound to TASKQ_EXCHANGE)",
    )
    queues.add_argument("--json", action="store_true", help="print a JSON array of objects")
    queues.add_argument(
        "--management-url",
        metavar="URL",
        default=os.environ.get(MANAGEMENT_URL_ENV) or None,
        help="RabbitMQ's management API, e.g. http://user:pass@host:15672 (default: "
        f"{MANAGEMENT_URL_ENV}, else port 15672 of the broker's host, with the broker "
        "URL's credentials)",
    )
    queues.set_defaults(run=cmd_queues, default_level="warning")


def cmd_queues(args: argparse.Namespace) -> int:
    app = app_for(args, need_broker=True, need_store=False)
    rows = asyncio.run(closing(app, _rows(app, args.management_url, from_app=bool(args.app))))
    if args.json:
        print(json.dumps([asdict(row) for row in rows], indent=2))
    else:
        print(describe(rows))
    return RET_OK


async def _rows(app: TaskQueue, management_url: str | None, *, from_app: bool) -> list[QueueRow]:
    broker = app.broker
    assert isinstance(broker, AmqpBroker)  # app_for refuses the memory broker
    # Beside the broker's node, with its credentials, which the API shares with AMQP
    # by default.
    api = broker.management_api(management_url)
    try:
        # Blocking calls, in a thread: the broker's connection keeps its heartbeats.
        known = await asyncio.to_thread(api.queues)
        bound = [] if from_app else await asyncio.to_thread(api.bound_queues, app.topology.exchange)
    except ManagementUnavailable as exc:
        log.warning(
            "unacked counts unknown: they need RabbitMQ's management API"
            + ("" if from_app else ", and so does finding the task queues: pass APP_PATH"),
            reason=str(exc),
        )
        return await _declared_rows(app, app.tasks if from_app else [])
    tasks = list(app.tasks) if from_app else _tasks_of(app, bound)
    rows = [_row(name := app.topology.queue_name(task), task, known.get(name)) for task in tasks]
    return [*rows, _row(app.topology.dead_queue, None, known.get(app.topology.dead_queue))]


def _tasks_of(app: TaskQueue, queues: list[str]) -> list[str]:
    """The task names of the queues bound to the app's exchange (ours are all named
    ``<exchange>.<task>``; another's binding is left out)."""
    prefix = app.topology.exchange + "."
    return [name.removeprefix(prefix) for name in queues if name.startswith(prefix)]


def _row(name: str, task: str | None, info: QueueInfo | None) -> QueueRow:
    if info is None:  # a queue that does not exist holds nothing and feeds no one
        return QueueRow(name, task, ready=0, unacked=0, consumers=0, declared=False)
    return QueueRow(
        name,
        task,
        info.ready,
        info.unacked,
        info.consumers,
        type=info.queue_type,
        leader=info.leader,
        members=list(info.members) if info.members is not None else None,
    )


async def _declared_rows(app: TaskQueue, tasks: Iterable[str]) -> list[QueueRow]:
    """Passive declares, one queue at a time: ready and consumers, unacked unknown;
    the type the app declares each queue as."""
    rows = [
        _as_declared(
            _row(app.topology.queue_name(task), task, await app.broker.queue_info(task)),
            app.broker.declared_queue_type(app.tasks[task].queue),
        )
        for task in tasks
    ]
    dead = _row(app.topology.dead_queue, None, await app.broker.dead_queue_info())
    return [*rows, _as_declared(dead, app.topology.dead_queue_arguments()["x-queue-type"])]


def _as_declared(row: QueueRow, queue_type: str) -> QueueRow:
    return replace(row, type=queue_type) if row.declared else row


def describe(rows: list[QueueRow]) -> str:
    """A table for people; ``-`` where a count is unknown."""
    width = max([len("QUEUE"), *(len(row.name) for row in rows)])
    lines = [f"{'QUEUE':<{width}}  {'READY':>7}  {'UNACKED':>7}  {'CONSUMERS':>9}"]
    for row in rows:
        unacked = "-" if row.unacked is None else str(row.unacked)
        note = "" if row.declared else "  (not declared yet)"
        lines.append(f"{row.name:<{width}}  {row.ready:>7}  {unacked:>7}  {row.consumers:>9}{note}")
    return "\n".join(lines)
