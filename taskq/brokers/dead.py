"""Dead letters as an operator sees them: which task, which id, why, since when.

Both brokers read their dead-letter queue through :func:`read_dead_letter`, so a
letter says the same on either, and choose what to requeue with :func:`selects`.

Where each field comes from, first that is there:

    task_id   the body's ``id``, else the AMQP ``correlation_id`` (as the worker reads
              it: the status store knows the task by the body's id)
    task      the body's ``task``, else the task of the queue it died in
              (``x-taskq-queue``, else RabbitMQ's ``x-death[0].queue``). Never the
              routing key: a delayed message's key starts with 30 bit-words.
    reason    ``x-taskq-reason``, else ``x-death[0].reason``, else
              ``x-first-death-reason``, else ``"unknown"``
    dead_at   ``x-taskq-dead-at``, else ``x-death[0].time``
    priority  the AMQP ``priority`` property (kept when dead-lettered), else 0
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from taskq.brokers.base import Broker, DeadLetter, PrepareRequeue
from taskq.errors import ConfigurationError, MalformedMessage
from taskq.logs import get_logger
from taskq.message import TaskMessage
from taskq.status import utcnow
from taskq.topology import (
    DEAD_AT_HEADER,
    QUEUE_HEADER,
    REASON_HEADER,
    QueueSpec,
    Topology,
    check_name,
)

log = get_logger(__name__)

#: RabbitMQ's record of the deaths of a message it dead-lettered itself, latest first.
X_DEATH = "x-death"
_FIRST_DEATH_REASON = "x-first-death-reason"


def dead_letter_headers(headers: Mapping[str, Any], *, reason: str, queue: str) -> dict[str, Any]:
    """The headers of a message being dead-lettered: its own, plus why, from where and
    when."""
    return {
        **headers,
        REASON_HEADER: reason,
        QUEUE_HEADER: queue,
        DEAD_AT_HEADER: utcnow().isoformat(),
    }


def read_dead_letter(
    topology: Topology,
    *,
    body: bytes,
    routing_key: str,
    headers: Mapping[str, Any],
    correlation_id: str | None,
    message_id: str | None,
    priority: int = 0,
) -> DeadLetter:
    """A message of the dead-letter queue as a :class:`DeadLetter`; whatever its body or
    headers hold, this never raises."""
    death = _latest_death(headers)
    queue = header_text(headers.get(QUEUE_HEADER)) or header_text(death.get("queue"))
    reason = (
        header_text(headers.get(REASON_HEADER))
        or header_text(death.get("reason"))
        or header_text(headers.get(_FIRST_DEATH_REASON))
    )
    task_id, task = _identify(body, correlation_id)
    return DeadLetter(
        body=body,
        routing_key=routing_key,
        reason=reason or "unknown",
        queue=queue,
        correlation_id=correlation_id,
        message_id=message_id,
        headers=dict(headers),
        task_id=task_id,
        task=_task_name(topology, task) or _task_of_queue(topology, queue),
        dead_at=_timestamp(headers.get(DEAD_AT_HEADER)) or _timestamp(death.get("time")),
        priority=priority,
    )


def check_ids(ids: Sequence[str]) -> frozenset[str]:
    """Task ids to requeue, as a set; a lone string is refused (it would be read as
    one id per character)."""
    if isinstance(ids, str):
        raise ConfigurationError(f"ids= takes a list of task ids, e.g. [{ids!r}]")
    return frozenset(ids)


def selects(letter: DeadLetter, *, task: str | None, ids: frozenset[str]) -> bool:
    """Whether a requeue or listing asked for ``letter``: those of ``task`` and, with
    ``ids``, only those ids; every letter when neither is given."""
    if task is not None and letter.task != task:
        return False
    return not ids or letter.task_id in ids


async def republish(broker: Broker, letter: DeadLetter, prepare: PrepareRequeue | None) -> bool:
    """Publish ``letter`` back to its task's queue through ``broker.publish``, after
    ``prepare`` (default: the task's existing queue, or a new quorum one), with the
    priority it was published with. Returns
    ``False``, having published nothing, for a letter with no task id or no task name
    to send it back by: it stays a dead letter."""
    if letter.task_id is None or letter.task is None:
        log.warning(
            "dead letter not requeued: no task id or task name to send it back by",
            task_id=letter.task_id,
            task=letter.task,
            reason=letter.reason,
        )
        return False
    if prepare is None:
        spec = QueueSpec(letter.task, authoritative=False)
    else:
        spec = await prepare(letter.task_id, letter.task)
    await broker.publish(spec, letter.body, task_id=letter.task_id, priority=letter.priority)
    log.info("dead letter requeued", task_id=letter.task_id, task=letter.task)
    return True


def header_text(value: Any) -> str | None:
    """A header value as text (AMQP long strings may arrive as bytes)."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def _latest_death(headers: Mapping[str, Any]) -> Mapping[str, Any]:
    deaths = headers.get(X_DEATH)
    if isinstance(deaths, list) and deaths and isinstance(deaths[0], Mapping):
        return deaths[0]
    return {}


def _identify(body: bytes, correlation_id: str | None) -> tuple[str | None, str | None]:
    """The task id and name as a worker would read them, from a body of any shape."""
    try:
        message = TaskMessage.decode(body, correlation_id=correlation_id)
    except MalformedMessage as exc:
        return exc.task_id, exc.task
    except Exception:
        # A dead letter may be exactly the message that tripped a bug in decoding:
        # reading it, and dead-lettering it in the first place, must not trip it again.
        log.exception("dead letter body unreadable", correlation_id=correlation_id)
        return correlation_id, None
    return message.id, message.task


def _task_name(topology: Topology, name: str | None) -> str | None:
    """``name`` if a task queue can be named after it, else ``None``."""
    if name is None:
        return None
    try:
        check_name(name, what="task name")
        topology.queue_name(name)
    except ConfigurationError:
        return None
    return name


def _task_of_queue(topology: Topology, queue: str | None) -> str | None:
    prefix = f"{topology.exchange}."
    if queue is None or not queue.startswith(prefix):
        return None
    return _task_name(topology, queue.removeprefix(prefix))


def _timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from an ISO-8601 header or an AMQP timestamp."""
    if isinstance(value, datetime):
        moment = value
    else:
        text = header_text(value)
        if text is None:
            return None
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
