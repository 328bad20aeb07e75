"""Every name and argument taskq declares on the broker, derived in this one place.

They are part of the wire format (README, "Wire format"): queue arguments must never
differ between two declarers, or RabbitMQ answers 406 PRECONDITION_FAILED.

    exchange  <exchange>              topic, durable; routing key = task name
    queue     <exchange>.<task name>  durable, quorum (or classic); binding key = task name;
                                      a priority task's: classic with x-max-priority
                                      (quorum on a broker whose quorum queues have
                                      priorities, RabbitMQ 4.x)
    exchange  <exchange>.dead         fanout, durable
    queue     <exchange>.dead         durable; dead letters keep their routing key and
                                      carry the reason in header ``x-taskq-reason``
    exchange  <exchange>.control      fanout, durable: control messages to workers
    queue     <exchange>.control.<worker id>  exclusive, auto-delete, one per worker
    exchange  <exchange>.broadcast.<task name>  fanout, durable; bound from <exchange> by
                                      the task name (exchange-to-exchange binding)
    queue     <exchange>.broadcast.<task name>.<worker id>  exclusive, auto-delete, one
                                      per worker process and broadcast task
    exchange  <exchange>.delay.<k>    topic, durable; k = 0 .. DELAY_LEVELS - 1
    queue     <exchange>.delay.<k>    quorum; holds a message 2**k units, then
                                      dead-letters it to level k - 1 (k = 0: <exchange>)
    queue     <exchange>.scheduler    quorum, single active consumer: schedulers'
                                      heartbeats, which elect the active one

Delays (kombu's native delayed delivery, NServiceBus's shape): a delay of ``n`` units is
spelled in bits as the first DELAY_LEVELS words of the routing key,
``b29.….b0.<task name>``, and published to the level of its highest set bit. Each level
sends a message whose bit is 1 into its queue, to wait, and one whose bit is 0 straight
on to the level below; level 0 hands it to ``<exchange>``, where every task queue has a
second binding, DELAY_LEVELS ``*`` words then its task name. A message waits only
behind messages of the same level, which all wait as long: no head-of-line blocking.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from taskq.errors import ConfigurationError

QueueType = Literal["quorum", "classic"]
QUEUE_TYPES: tuple[QueueType, ...] = ("quorum", "classic")

#: Queue argument that makes a classic queue a priority queue (levels 0 .. its value).
MAX_PRIORITY_ARGUMENT = "x-max-priority"

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
#: Seconds in one unit of delay: a delay is rounded to the nearest unit.
DELAY_UNIT = 0.1
#: Delay levels k = 0 .. DELAY_LEVELS - 1; level k holds a message 2**k units.
DELAY_LEVELS = 30
#: The longest delay: every level once, (2**30 - 1) units, about 3.4 years.
MAX_DELAY = ((1 << DELAY_LEVELS) - 1) * DELAY_UNIT
# Multiplied by, not divided by DELAY_UNIT: 0.15 / 0.1 is 1.4999999999999998 in floats,
# 0.15 * 10 is 1.5, so halves round up as written.
_UNITS_PER_SECOND = round(1 / DELAY_UNIT)

# A delayed routing key is DELAY_LEVELS one-character words, then the task name: 60
# characters in front of it, and a routing key is an AMQP short string (255 bytes).
_MAX_NAME = 190
# A longer name could look like a delayed routing key to the DELAY_LEVELS '*' words of
# a task queue's delay binding; ours have at most this many words, delayed keys more.
_MAX_WORDS = DELAY_LEVELS
# Task names whose queue would be a delay level's queue.
_DELAY_TASKS = frozenset(f"delay.{level}" for level in range(DELAY_LEVELS))
#: The task name whose queue would be the schedulers' (taskq.schedules.leader).
SCHEDULER = "scheduler"


def check_name(name: str, *, what: str) -> str:
    if len(name) > _MAX_NAME or not _NAME.fullmatch(name) or name.count(".") >= _MAX_WORDS:
        raise ConfigurationError(
            f"{what} {name!r} is not valid: use words of letters, digits, '_' or '-' "
            f"joined by dots (e.g. 'emails.send'), at most {_MAX_NAME} characters "
            f"and {_MAX_WORDS} words"
        )
    return name


def check_queue_type(queue_type: str) -> QueueType:
    if queue_type not in QUEUE_TYPES:
        raise ConfigurationError(
            f"queue_type must be one of {', '.join(QUEUE_TYPES)}, not {queue_type!r}"
        )
    return queue_type


def delay_units(delay: float) -> int:
    """``delay`` seconds in units of :data:`DELAY_UNIT`, rounded to the nearest (half
    up), and at least 1 for any delay > 0: a delay asked for never vanishes. 0 for
    ``delay <= 0``, which means "no delay".

        delay_units(1.5) == 15;  delay_units(0.01) == 1;  delay_units(-3) == 0

    Raises :class:`ConfigurationError` above :data:`MAX_DELAY` (and for NaN): what the
    broker's levels cannot spell is refused before anything is published."""
    if not delay <= MAX_DELAY:
        raise ConfigurationError(
            f"a delay of {delay!r} seconds cannot be held: taskq delays a task by at most "
            f"{MAX_DELAY:.0f} seconds (about 3.4 years); use a finite, shorter delay"
        )
    if delay <= 0:
        return 0
    return max(1, math.floor(delay * _UNITS_PER_SECOND + 0.5))


def delay_level(units: int) -> int:
    """The level a delay of ``units`` is published to: its highest set bit (the bits
    above it are 0, so no higher level would hold it)."""
    return units.bit_length() - 1


def delay_routing_key(units: int, task: str) -> str:
    """``b29.b28.….b0.<task>``: the delay's bits, highest first, as '0'/'1' words."""
    return ".".join(format(units, f"0{DELAY_LEVELS}b")) + f".{task}"


def delay_pattern(level: int, bit: str) -> str:
    """The binding key at level ``level`` for delayed keys whose bit ``level`` is
    ``bit`` ('1': into the level's queue; '0': on to the level below)."""
    words = ["*"] * DELAY_LEVELS
    words[DELAY_LEVELS - 1 - level] = bit
    return ".".join(words) + ".#"


@dataclass(frozen=True)
class QueueSpec:
    """What a declarer knows of a task's queue."""

    task: str
    queue_type: QueueType = "quorum"
    #: A priority queue with levels 0 .. max_priority: classic with ``x-max-priority``
    #: where the broker's quorum queues have no priorities (RabbitMQ 3.x), else of
    #: ``queue_type`` (``Broker.declared_queue_type``).
    max_priority: int | None = None
    #: False when the sender knows only the task's name (``app.send("x", ...)``): an
    #: existing queue is then used as it is, whatever its arguments, and only a missing
    #: one is declared, with ``queue_type``.
    authoritative: bool = True


#: Queue argument: how many cluster nodes a new quorum queue gets a member on.
REPLICAS_ARGUMENT = "x-quorum-initial-group-size"


def check_queue_replicas(replicas: int | None) -> int | None:
    if replicas is not None and (isinstance(replicas, bool) or not replicas >= 1):
        raise ConfigurationError(
            f"queue_replicas must be a whole number of nodes from 1, or None for "
            f"RabbitMQ's own default (its quorum_cluster_size, 3 in 3.10), not {replicas!r}"
        )
    return replicas


@dataclass(frozen=True)
class Topology:
    """The names and arguments of one app's objects on the broker."""

    exchange: str = "taskq"
    #: ``x-quorum-initial-group-size`` of every quorum queue declared (task, delay,
    #: dead-letter and scheduler queues); ``None`` leaves it to RabbitMQ (members on as
    #: many nodes as its ``quorum_cluster_size``, 3 by default in 3.10). RabbitMQ checks
    #: it like any queue argument: every declarer of a queue must give the same value.
    queue_replicas: int | None = None

    def __post_init__(self) -> None:
        check_name(self.exchange, what="exchange name")
        check_queue_replicas(self.queue_replicas)

    def _replicated(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """A quorum queue's ``arguments`` with :attr:`queue_replicas`, when set (when
        not, exactly the arguments declared before the option existed)."""
        if self.queue_replicas is not None:
            arguments[REPLICAS_ARGUMENT] = self.queue_replicas
        return arguments

    def queue_name(self, task: str) -> str:
        name = f"{self.exchange}.{task}"
        if len(name) > SHORT_STRING:  # names are ASCII: characters are bytes
            raise ConfigurationError(
                f"the queue name of task {task!r} on exchange {self.exchange!r} would be "
                f"{len(name)} characters; AMQP allows {SHORT_STRING}: shorten the task "
                "or exchange name"
            )
        if task in _DELAY_TASKS:
            raise ConfigurationError(
                f"task name {task!r} is taken: its queue would be delay level "
                f"{task.removeprefix('delay.')}'s queue; choose another name"
            )
        if task == SCHEDULER:
            raise ConfigurationError(
                f"task name {task!r} is taken: its queue would be the schedulers' "
                f"({name}); choose another name"
            )
        return name

    @staticmethod
    def binding_keys(task: str) -> tuple[str, str]:
        """A task queue's binding keys on ``<exchange>``: its task name, and that name
        behind DELAY_LEVELS ``*`` words, for delayed messages back from level 0 (exact
        word counts: task ``b`` never gets a delayed ``a.b``)."""
        return task, "*." * DELAY_LEVELS + task

    @property
    def dead_exchange(self) -> str:
        return f"{self.exchange}.dead"

    @property
    def dead_queue(self) -> str:
        return f"{self.exchange}.dead"

    def queue_arguments(
        self, queue_type: QueueType, max_priority: int | None = None
    ) -> dict[str, Any]:
        """Arguments of a task queue. Quorum queues dead-letter at-least-once into
        ``<exchange>.dead`` (the broker does so itself once a delivery limit is set);
        classic queues point there too but can only do it at-most-once.

        ``max_priority``: a classic queue becomes a priority queue with levels 0 ..
        ``max_priority`` (``x-max-priority``). A quorum queue takes no such argument
        (RabbitMQ 3.x refuses it, and 4.x quorum queues have their priority levels
        built in): which type a priority task's queue gets is the broker's choice
        (:meth:`~taskq.brokers.base.Broker.declared_queue_type`). Without
        ``max_priority`` the arguments are exactly those of a queue without priorities.
        """
        if queue_type == "quorum":
            return self._replicated(
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-exchange": self.dead_exchange,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
        arguments: dict[str, Any] = {
            "x-queue-type": "classic",
            "x-dead-letter-exchange": self.dead_exchange,
        }
        if max_priority is not None:
            arguments[MAX_PRIORITY_ARGUMENT] = max_priority
        return arguments

    def dead_queue_arguments(self) -> dict[str, Any]:
        # Quorum: replicated like the task queues, so a dead letter is as safe as a task.
        return self._replicated({"x-queue-type": "quorum"})

    @property
    def control_exchange(self) -> str:
        """Fanout: control messages to every worker of the app ("cancel task X")."""
        return f"{self.exchange}.control"

    def control_queue(self, worker_id: str) -> str:
        """A worker's own queue on :attr:`control_exchange`: exclusive, auto-delete."""
        return f"{self.exchange}.control.{worker_id}"[:SHORT_STRING]

    def broadcast_exchange(self, task: str) -> str:
        """Fanout of a broadcast task (:mod:`taskq.broadcast`): ``<exchange>`` routes the
        task's name to it through an exchange-to-exchange binding."""
        return f"{self.exchange}.broadcast.{task}"

    def broadcast_queue(self, task: str, worker_id: str) -> str:
        """A worker's own queue on :meth:`broadcast_exchange`: exclusive, auto-delete."""
        return f"{self.exchange}.broadcast.{task}.{worker_id}"[:SHORT_STRING]

    @property
    def scheduler_queue(self) -> str:
        """Where schedulers publish heartbeats; its single active consumer is the
        active scheduler (:mod:`taskq.schedules.leader`)."""
        return f"{self.exchange}.{SCHEDULER}"

    def scheduler_queue_arguments(self) -> dict[str, Any]:
        """Quorum (replicated: the lease survives a node), one consumer served at a
        time; heartbeats are only worth their arrival, so a backlog is capped by age and
        length, oldest dropped."""
        return self._replicated(
            {
                "x-queue-type": "quorum",
                "x-single-active-consumer": True,
                "x-message-ttl": 10_000,
                "x-max-length": 100,
                "x-overflow": "drop-head",
            }
        )

    def delay_exchange(self, level: int) -> str:
        return f"{self.exchange}.delay.{level}"

    def delay_queue(self, level: int) -> str:
        return f"{self.exchange}.delay.{level}"

    def delay_target(self, level: int) -> str:
        """Where level ``level`` sends a message on: its '0' binding and its queue's
        dead letters go to the level below, level 0's to ``<exchange>`` itself."""
        return self.delay_exchange(level - 1) if level > 0 else self.exchange

    def delay_queue_arguments(self, level: int) -> dict[str, Any]:
        """Arguments of level ``level``'s queue: every message expires after ``2**level``
        units and is dead-lettered on with its routing key. Quorum with at-least-once
        dead-lettering (which needs ``reject-publish``): a classic queue dead-letters
        at-most-once, and a delayed task could be lost on the hop."""
        return self._replicated(
            {
                "x-queue-type": "quorum",
                "x-message-ttl": round((1 << level) * DELAY_UNIT * 1000),
                "x-dead-letter-exchange": self.delay_target(level),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            }
        )


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
