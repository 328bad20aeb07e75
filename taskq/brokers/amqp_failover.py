"""A publish caught by its node's death, published again on the next node.

With several nodes (:mod:`taskq.brokers.amqp_nodes`), a send whose confirm was lost
with its connection does not raise while another node answers within the send timeout:
the publishing connection moves to the next node, and the messages that got no confirm
are published there again, as the same messages (body, task id, message id). Those that
were confirmed are not sent again.

Which outcomes are worth another try (:func:`worth_retrying`): the connection or channel
went away (any of the driver's ways of saying so, or a confirm cancelled under us), or
the broker nacked. Not a return (the window machinery declares the queue again), not a
refused declaration, not a timeout at the deadline.

A nack closes the channel it came on (:func:`drop_nacking_channel`), and the retry goes
out on a fresh one that aio-pika's robust channel opens in its place: RabbitMQ 3.10 can
nack every publish of a channel whose first publish into a quorum queue came before the
queue's new leader was elected, for the rest of that channel's life (rabbitmq-server
#15333, measured here: a reconnect about 0.2 s after the leader's node died).

A duplicate can come of it: a message whose confirm was on its way when the connection
died was taken, and is published again. The status store's create-once makes the
second send of a task id harmless (README, "Several broker nodes").
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import aiormq
import aiormq.exceptions as amqp

from taskq.brokers.amqp_errors import driver_lost
from taskq.brokers.amqp_publish import Outcome, returned
from taskq.errors import TaskqError
from taskq.logs import get_logger
from taskq.loops import cancel_requested

log = get_logger("taskq.brokers.amqp")  # the broker's lines keep its logger name

#: Seconds before the first retry, doubled for each next one up to :data:`MAX_PAUSE`:
#: time for the robust connection to notice the loss and reach the next node, and for
#: a quorum queue's new leader to be elected (0.15-0.5 s measured here).
FIRST_PAUSE = 0.05
MAX_PAUSE = 0.5

#: The driver's ways of saying the connection or the channel went away.
_GONE = (amqp.AMQPConnectionError, amqp.ChannelInvalidStateError, ConnectionError, OSError)


def worth_retrying(outcome: Outcome) -> bool:
    """A message whose publish may succeed on a fresh channel or the next node: see the
    module docstring. A taskq error (a failed declaration before the publish) is judged
    by the driver error it was translated from."""
    if isinstance(outcome, TaskqError):
        outcome = outcome.__cause__
    if outcome is None or returned(outcome):
        return False
    if isinstance(outcome, amqp.DeliveryError):  # a nack
        return True
    if type(outcome) is amqp.ChannelClosed:  # closed under us, no reply code of a refusal
        return True
    # A confirm cancelled by the driver as its connection closed reads as a timeout
    # (taskq.brokers.amqp_publish): the caller retries it only while time is left.
    if isinstance(outcome, TimeoutError | asyncio.CancelledError):
        return True
    if isinstance(outcome, _GONE):
        return True
    return isinstance(outcome, RuntimeError) and driver_lost(outcome)


def timed_out(outcome: Outcome) -> bool:
    """The outcome of a publish that ran out of time (or whose confirm was cancelled)."""
    if isinstance(outcome, TaskqError):
        outcome = outcome.__cause__
    return isinstance(outcome, TimeoutError | asyncio.CancelledError)


def to_retry(outcomes: Sequence[Outcome]) -> list[int]:
    """The indexes of the outcomes :func:`worth_retrying`."""
    return [index for index, outcome in enumerate(outcomes) if worth_retrying(outcome)]


def nacked(outcomes: Sequence[Outcome]) -> bool:
    return any(
        isinstance(outcome, amqp.DeliveryError) and not returned(outcome) for outcome in outcomes
    )


async def drop_nacking_channel(channel: aiormq.Channel) -> None:
    """Close the channel a nack came on; aio-pika's robust channel opens a fresh one in
    its place (rabbitmq-server #15333). Other publishes in flight on it lose their
    confirms and are retried the same way."""
    if channel.is_closed:
        return
    try:
        await channel.close()
    except (amqp.AMQPError, ConnectionError, OSError, RuntimeError) as exc:
        log.debug("nacking channel already closed", error=repr(exc))
    except asyncio.CancelledError:
        # aiormq cancels its channel's close when the connection dies under it, and the
        # close re-raises that cancel: the channel is gone, which is what was asked. A
        # cancel of this task itself goes on (seen in the cluster fault scenario: the
        # clients' node killed while a nacking channel closed; the send then raised
        # CancelledError instead of failing over).
        if cancel_requested():
            raise
        log.debug("nacking channel closed with its connection")


def pause(attempt: int, left: float) -> float:
    """Seconds to wait before retry number ``attempt`` (from 1), within ``left``."""
    wanted: float = FIRST_PAUSE * 2.0 ** (attempt - 1)
    return max(0.0, min(wanted, MAX_PAUSE, left))
