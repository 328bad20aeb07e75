"""What the tests of several broker nodes share: "nodes" that are proxies in front of
the one shared RabbitMQ (a proxy that refuses is a node that is down), and a port
nothing listens on."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from tests.faults.proxy import FaultProxy


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def proxies(amqp_url: str) -> Iterator[list[FaultProxy]]:
    """Three "nodes": proxies to the one broker, each can be made to refuse."""
    port = urlsplit(amqp_url).port or 5672
    made = [FaultProxy(("127.0.0.1", port)) for _ in range(3)]
    for proxy in made:
        proxy.start()
    yield made
    for proxy in made:
        proxy.close()
