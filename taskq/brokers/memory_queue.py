"""A queue of the memory broker: its messages in RabbitMQ's delivery order.

Kept apart from :mod:`taskq.brokers.memory` (exchanges, consumers, settlement) because
the order is the part that must match RabbitMQ 3.10 exactly, queue type by queue type:

- FIFO; a requeued message goes back to the *head* of a classic queue and to the *back*
  of a quorum queue (measured: ``tests/contract/test_broker_contract.py``);
- a priority queue (classic with ``x-max-priority``) delivers the highest priority
  first, FIFO within a level; a priority above the queue's maximum counts as the
  maximum, a message without one as 0 (RabbitMQ's rules); a requeued message goes back
  to the head of its own level.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from taskq.topology import QueueType

if TYPE_CHECKING:
    from taskq.brokers.memory import _Subscription


@dataclass(eq=False)
class Message:
    body: bytes
    routing_key: str
    headers: dict[str, Any]
    correlation_id: str | None
    message_id: str | None
    #: AMQP's ``priority`` property as published (0: none).
    priority: int = 0
    #: How many times it was handed to a consumer.
    deliveries: int = 0


class Messages:
    """Ready messages, one FIFO per priority level, taken from the highest level first.
    A queue without priorities has one level: exactly a deque."""

    def __init__(self, max_priority: int | None) -> None:
        self._top = max_priority or 0
        self._levels: list[deque[Message]] = [deque() for _ in range(self._top + 1)]
        self._count = 0

    def _level(self, message: Message) -> deque[Message]:
        return self._levels[min(max(message.priority, 0), self._top)]

    def append(self, message: Message) -> None:
        self._level(message).append(message)
        self._count += 1

    def popleft(self) -> Message:
        """The next message to deliver; raises ``IndexError`` when there is none."""
        for level in reversed(self._levels):
            if level:
                self._count -= 1
                return level.popleft()
        raise IndexError("no ready message")

    def put_back(self, messages: Sequence[Message], *, at_head: bool) -> None:
        """Requeued messages, oldest first: each to the head (``at_head``) or the back
        of its level, in their order."""
        if at_head:
            for message in reversed(messages):
                self._level(message).appendleft(message)
        else:
            for message in messages:
                self._level(message).append(message)
        self._count += len(messages)

    def __len__(self) -> int:
        return self._count


@dataclass(eq=False)
class MemoryQueue:
    name: str
    queue_type: QueueType
    arguments: dict[str, Any]
    max_priority: int | None = None
    binding_keys: set[str] = field(default_factory=set)
    messages: Messages = field(init=False)
    subscriptions: list[_Subscription] = field(default_factory=list)
    turn: int = 0  # round-robin position among subscriptions

    def __post_init__(self) -> None:
        self.messages = Messages(self.max_priority)

    @property
    def counts_deliveries(self) -> bool:
        # Only quorum queues count (RabbitMQ's x-delivery-count) and put a requeued
        # message at the back; classic ones put it back at the head.
        return self.queue_type == "quorum"

    def put_back(self, messages: Sequence[Message]) -> None:
        """Requeued messages, oldest first, go back in their order."""
        self.messages.put_back(messages, at_head=not self.counts_deliveries)
