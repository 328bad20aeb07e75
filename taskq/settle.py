"""Settling a delivery: the one place that acks, requeues or dead-letters a message.

Whatever happened while a message was handled ends as one :class:`Outcome`, and
:func:`settle` carries it out. Nothing else in taskq calls ``ack`` or ``requeue``: that
is how "ack only after the outcome is recorded" stays true as policies are added.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

from taskq.brokers.base import Broker, Delivery
from taskq.errors import BrokerError
from taskq.topology import MAX_REASON


class Settlement(Enum):
    #: Done with it for good: succeeded (and recorded), or a duplicate of a done task.
    ACK = "ack"
    #: Give it back to the queue to run later (not started, or its outcome not recorded).
    REQUEUE = "requeue"
    #: It cannot or must not run again: publish it to the dead-letter queue, then ack.
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True, slots=True)
class Outcome:
    settlement: Settlement
    #: Why, for dead letters (goes into the ``x-taskq-reason`` header) and logs.
    reason: str = ""

    @classmethod
    def ack(cls) -> Outcome:
        return _ACK

    @classmethod
    def requeue(cls, reason: str = "") -> Outcome:
        return cls(Settlement.REQUEUE, reason)

    @classmethod
    def dead_letter(cls, reason: str) -> Outcome:
        if len(reason) > MAX_REASON:
            reason = reason[: MAX_REASON - 1] + "…"
        return cls(Settlement.DEAD_LETTER, reason)


_ACK = Outcome(Settlement.ACK)


async def settle(broker: Broker, delivery: Delivery, outcome: Outcome, log: Any) -> None:
    """Carry out ``outcome``. A dead letter is acked only once the broker confirmed the
    dead-letter publish; if that fails the message is requeued, never dropped. Broker
    errors here are logged, not raised: a message whose ack was lost with its channel
    comes back by itself, and the status store tells its rerun that it is done."""
    try:
        if outcome.settlement is Settlement.DEAD_LETTER:
            try:
                await broker.dead_letter(delivery, outcome.reason)
            except BrokerError as exc:
                log.error("dead-lettering failed; requeued", reason=outcome.reason, error=str(exc))
                await delivery.requeue()
                return
            log.warning("dead-lettered", reason=outcome.reason)
            await delivery.ack()
        elif outcome.settlement is Settlement.ACK:
            await delivery.ack()
        else:
            await delivery.requeue()
    except BrokerError as exc:
        log.warning("could not settle; the broker will redeliver", error=str(exc))
