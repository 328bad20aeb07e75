"""Which scheduler is active: RabbitMQ's single active consumer, read through heartbeats.

Every scheduler consumes the scheduler queue (``<exchange>.scheduler``, declared with
``x-single-active-consumer``) and publishes a heartbeat into it every ``interval``
seconds. RabbitMQ delivers the queue's messages to one consumer only, the oldest live
one, and hands that role to the next in line when its channel or connection closes:
a process killed (the kernel resets its TCP connection at once), a network cut (once
the broker's AMQP heartbeat gives up on the connection), a clean stop.

AMQP 0-9-1 never tells a consumer that it became the active one: it only starts
receiving. So a scheduler is active while heartbeats arrive (anyone's, its own
included: alone, it hears itself), and passive when none came for
:data:`PASSIVE_AFTER` intervals, or at once when its consumer is lost (the channel
closed under it: whatever comes back after a reconnect stands at the back of the line).

The limits, and why they are only an optimisation: for up to ``PASSIVE_AFTER *
interval`` seconds, an active scheduler cut off from the broker may still believe it
leads while another has taken over, and both send the same ticks. That is safe because
a tick's task id is deterministic and claimed once in the status store
(:mod:`taskq.schedules.scheduler`): the second send publishes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable

from taskq.brokers.base import Broker, Consumer
from taskq.errors import TaskqError
from taskq.logs import get_logger
from taskq.loops import cancel_requested
from taskq.status import utcnow

log = get_logger(__name__)

#: Seconds between two heartbeats of a scheduler.
HEARTBEAT_INTERVAL = 0.5
#: Heartbeat intervals without a heartbeat after which a scheduler is passive.
PASSIVE_AFTER = 2.5


class Leadership:
    """One scheduler's place in the line: :attr:`active` while heartbeats arrive."""

    def __init__(
        self,
        broker: Broker,
        scheduler_id: str,
        *,
        interval: float = HEARTBEAT_INTERVAL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.broker = broker
        self.scheduler_id = scheduler_id
        self.interval = interval
        self._clock = clock or time.monotonic
        #: Loop time of the last heartbeat received; ``None``: none since passive.
        self._last: float | None = None
        self._consumer: Consumer | None = None
        self._beating: asyncio.Task[None] | None = None
        #: Set on each heartbeat received: wakes a scheduler waiting to become active.
        self.received = asyncio.Event()

    @property
    def active(self) -> bool:
        last = self._last
        return last is not None and self._clock() - last < PASSIVE_AFTER * self.interval

    async def start(self) -> None:
        """Join the line, then heartbeat until :meth:`stop`."""
        self._consumer = await self.broker.consume_scheduler(self._heard, lost=self._lost)
        self._beating = asyncio.create_task(
            self._beat(), name=f"taskq-heartbeat-{self.scheduler_id}"
        )

    async def stop(self) -> None:
        """Leave the line (the next scheduler takes over at once) and stop beating."""
        if self._beating is not None:
            self._beating.cancel()
            await asyncio.gather(self._beating, return_exceptions=True)
            self._beating = None
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            try:
                await consumer.close()
            except TaskqError as exc:
                log.info("scheduler consumer already gone", error=str(exc))
        self._last = None

    async def _heard(self, body: bytes) -> None:
        self._last = self._clock()
        self.received.set()

    def _lost(self) -> None:
        if self._last is not None:
            log.warning("scheduler consumer lost; passive", scheduler=self.scheduler_id)
        self._last = None

    async def _beat(self) -> None:
        body = {"scheduler": self.scheduler_id, "pid": os.getpid()}
        while not cancel_requested():  # not `while True`: see cancel_requested
            try:
                message = json.dumps({**body, "at": utcnow().isoformat()}).encode()
                await self.broker.publish_scheduler_heartbeat(message)
            except TaskqError as exc:  # the robust connection comes back by itself
                log.warning("scheduler heartbeat not published", error=str(exc))
            await asyncio.sleep(self.interval)
