"""Brokers: ``memory://`` (in-process) and ``amqp://`` / ``amqps://`` (RabbitMQ)."""

from __future__ import annotations

from taskq.brokers.base import Broker, Consumer, DeadLetter, Delivery, QueueInfo
from taskq.errors import ConfigurationError
from taskq.topology import Topology
from taskq.urls import mask_url, scheme_of

__all__ = ["Broker", "Consumer", "DeadLetter", "Delivery", "QueueInfo", "broker_from_url"]


def broker_from_url(url: str, topology: Topology, *, publish_timeout: float = 10.0) -> Broker:
    scheme = scheme_of(url)
    if scheme == "memory":
        from taskq.brokers.memory import MemoryBroker

        return MemoryBroker(topology, publish_timeout=publish_timeout)
    if scheme in ("amqp", "amqps"):
        from taskq.brokers.amqp import AmqpBroker

        return AmqpBroker(url, topology, publish_timeout=publish_timeout)
    raise ConfigurationError(
        f"unsupported broker URL {mask_url(url)!r}: use memory:// or amqp://user:pass@host:5672/vhost"
    )
