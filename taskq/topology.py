"""Every name and argument taskq declares on the broker, derived in this one place.

They are part of the wire format (README, "Wire format"): queue arguments must never
differ between two declarers, or RabbitMQ answers 406 PRECONDITION_FAILED.

    exchange  <exchange>              topic, durable; routing key = task name
    queue     <exchange>.<task name>  durable, quorum (or classic); binding key = task name
    exchange  <exchange>.dead         fanout, durable
    queue     <exchange>.dead         durable; dead letters keep their routing key and
                                      carry the reason in header ``x-taskq-reason``
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Literal

from taskq.errors import ConfigurationError

QueueType = Literal["quorum", "classic"]
QUEUE_TYPES: tuple[QueueType, ...] = ("quorum", "classic")

#: Header that carries a dead letter's reason.
REASON_HEADER = "x-taskq-reason"
#: Characters of a reason kept in that header. Headers travel in one AMQP frame
#: (128 KiB by default): a longer one makes RabbitMQ close the publishing connection
#: (FRAME_ERROR), so an exception with a huge message could never be dead-lettered.
#: The status store keeps the whole message.
MAX_REASON = 1000
#: Header naming the queue a dead letter came from.
QUEUE_HEADER = "x-taskq-queue"
#: Header saying when taskq dead-lettered a message (ISO-8601, UTC). RabbitMQ's own
#: dead letters carry the time in ``x-death`` instead.
DEAD_AT_HEADER = "x-taskq-dead-at"

#: Bytes in an AMQP short string: queue names, routing keys, ``correlation_id``.
SHORT_STRING = 255

# Words of letters, digits, '_' and '-', joined by dots: a topic routing key that no
# binding pattern character ('*', '#') can hide in, and a readable queue name.
_NAME = re.compile(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*")
_MAX_NAME = 200  # AMQP short strings stop at 255 bytes; leave room for the prefix


def check_name(name: str, *, what: str) -> str:
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name):
        raise ConfigurationError(
            f"{what} {name!r} is not valid: use words of letters, digits, '_' or '-' "
            f"joined by dots (e.g. 'emails.send'), at most {_MAX_NAME} characters"
        )
    return name


def check_queue_type(queue_type: str) -> QueueType:
    if queue_type not in QUEUE_TYPES:
        raise ConfigurationError(
            f"queue_type must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}"
        )
    return queue_type


@dataclass(frozen=True)
class QueueSpec:
    """What a declarer knows of a task's queue."""

    task: str
    queue_type: QueueType = "quorum"
    #: False when the sender knows only the task's name (``app.send("x", ...)``): an
    #: existing queue is then used as it is, whatever its arguments, and only a missing
    #: one is declared, with ``queue_type``.
    authoritative: bool = True


@dataclass(frozen=True)
class Topology:
    """The names and arguments of one app's objects on the broker."""

    exchange: str = "taskq"

    def __post_init__(self) -> None:
        check_name(self.exchange, what="exchange name")

    def queue_name(self, task: str) -> str:
        name = f"{self.exchange}.{task}"
        if len(name) > SHORT_STRING:  # names are ASCII: characters are bytes
            raise ConfigurationError(
                f"the queue name of task {task!r} on exchange {self.exchange!r} would be "
                f"{len(name)} characters; AMQP allows {SHORT_STRING}: shorten the task "
                "or exchange name"
            )
        return name

    @property
    def dead_exchange(self) -> str:
        return f"{self.exchange}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.exchange}.dead"

    def queue_arguments(self, queue_type: QueueType) -> dict[str, Any]:
        """Arguments of a task queue. Quorum queues dead-letter at-least-once into
        ``<exchange>.dead`` (the broker does so itself once a delivery limit is set);
        classic queues point there too but can only do it at-most-once."""
        if queue_type == "quorum":
            return {
                "x-queue-type": "quorum",
                "x-dead-letter-exchange": self.dead_exchange,
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        return {"x-queue-type": "classic", "x-dead-letter-exchange": self.dead_exchange}

    def dead_queue_arguments(self) -> dict[str, Any]:
        # Quorum: replicated like the task queues, so a dead letter is as safe as a task.
        return {"x-queue-type": "quorum"}


@functools.lru_cache(maxsize=4096)
def topic_matches(pattern: str, routing_key: str) -> bool:
    """AMQP topic matching: ``*`` is exactly one word, ``#`` zero or more words."""
    return _match(tuple(pattern.split(".")), tuple(routing_key.split(".")))


def _match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_match(rest, words[i:]) for i in range(len(words) + 1))
    if not words:
        return False
    return (head == "*" or head == words[0]) and _match(rest, words[1:])
