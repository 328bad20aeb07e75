"""What every part of :class:`~taskq.brokers.amqp.AmqpBroker` shares: the publishing
connection's state (``_Publisher``) and :class:`AmqpCore`, the base its mixins
(:mod:`taskq.brokers.amqp_window`, :mod:`taskq.brokers.amqp_side_channels`,
:mod:`taskq.brokers.amqp_inspect`) type ``self`` by. ``AmqpBroker`` gives what
``AmqpCore`` only declares.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from aio_pika.abc import (
    AbstractExchange,
    AbstractQueue,
    AbstractRobustChannel,
    AbstractRobustConnection,
    AbstractRobustExchange,
)

from taskq.brokers.amqp_broadcast import BroadcastDeclarations
from taskq.brokers.amqp_consumer import AmqpConsumer
from taskq.brokers.amqp_control import AmqpControlConsumer
from taskq.brokers.amqp_delay import DelayLevels
from taskq.brokers.amqp_scheduler import AmqpSchedulerConsumer
from taskq.brokers.base import Broker
from taskq.topology import QueueSpec


@dataclass(eq=False)
class _Publisher:
    """The publishing connection, its confirm channel and what it declared."""

    connection: AbstractRobustConnection
    channel: AbstractRobustChannel
    exchange: AbstractRobustExchange
    dead_exchange: AbstractRobustExchange
    #: The delay levels, declared on demand by delayed publishes.
    delays: DelayLevels
    #: Specs declared and bound on this connection since it last (re)connected (the
    #: spec, not the name: another queue type for the same task must reach the broker).
    declared: set[QueueSpec] = field(default_factory=set)
    #: Robust queue objects already registered on ``channel``: declared again through
    #: them, so a reconnect does not add one more object to replay each time.
    queues: dict[str, AbstractQueue] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: The control exchange, declared on the first control message.
    control: AbstractExchange | None = None
    #: Broadcast fanouts declared (replayed by the robust channel after a reconnect).
    broadcasts: BroadcastDeclarations = field(default_factory=BroadcastDeclarations)

    def forget(self, _: AbstractRobustConnection | None = None) -> None:
        self.declared.clear()
        self.delays.forget()


class AmqpCore(Broker):
    """The state and helpers of :class:`~taskq.brokers.amqp.AmqpBroker` that its mixins
    use, declared here for the type checker; the broker sets and defines them."""

    _url: str
    #: Publishes caught by a lost node or a nack are retried (several nodes only).
    _fails_over: bool
    _publisher: _Publisher | None
    _consumers: set[AmqpConsumer]
    _control_consumers: set[AmqpControlConsumer | AmqpSchedulerConsumer]

    if TYPE_CHECKING:  # defined by AmqpBroker

        def _calling(
            self,
            *,
            publishing: bool = False,
            task_id: str | None = None,
            deadline: float | None = None,
        ) -> AbstractAsyncContextManager[None]: ...

        async def _ready_publisher(self) -> _Publisher: ...

        async def _open(self, role: str) -> AbstractRobustConnection: ...

        async def _consuming_connection(self) -> AbstractRobustConnection: ...

        async def _ensure_queue(self, publisher: _Publisher, spec: QueueSpec) -> None: ...

        async def _declare_dead_queue(self, publisher: _Publisher) -> None: ...
