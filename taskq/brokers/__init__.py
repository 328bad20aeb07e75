"""Brokers: ``memory://`` (in-process) and ``amqp://`` / ``amqps://`` (RabbitMQ)."""

from __future__ import annotations

from taskq.brokers.base import Broker, Consumer, DeadLetter, Delivery, QueueInfo
from taskq.errors import ConfigurationError
from taskq.topology import Topology
from taskq.urls import mask_url, scheme_of, split_urls

__all__ = ["Broker", "Consumer", "DeadLetter", "Delivery", "QueueInfo", "broker_from_url"]


def broker_from_url(url: str, topology: Topology, *, publish_timeout: float = 10.0) -> Broker:
    """``url``: one URL, or the nodes of one RabbitMQ cluster as ``;``-separated
    ``amqp://`` / ``amqps://`` URLs (:mod:`taskq.brokers.amqp_nodes`)."""
    urls = split_urls(url)
    schemes = {scheme_of(each) for each in urls}
    # TLS to some nodes only is each URL's own choice: amqp and amqps mix.
    scheme = "amqp" if schemes <= {"amqp", "amqps"} else schemes.pop() if len(schemes) == 1 else ""
    if scheme == "memory" and len(urls) > 1:
        raise ConfigurationError("memory:// is one in-process broker: it takes no list of URLs")
    if scheme == "memory":
        from taskq.brokers.memory import MemoryBroker

        return MemoryBroker(topology, publish_timeout=publish_timeout)
    if scheme == "amqp":
        from taskq.brokers.amqp import AmqpBroker

        return AmqpBroker(url, topology, publish_timeout=publish_timeout)
    raise ConfigurationError(
        f"unsupported broker URL {mask_url(url)!r}: use memory:// or "
        "amqp://user:pass@host:5672/vhost (several nodes: amqp:// URLs separated by ';')"
    )
