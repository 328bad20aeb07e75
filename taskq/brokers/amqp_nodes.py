"""Several RabbitMQ nodes behind one broker: which node a connection is on, and the next
one when that node goes away.

aio-pika's ``connect_robust`` takes one URL and, having lost it, tries that URL again
until it answers, so a client of a cluster would wait for the node it lost instead of
going on with another. :class:`NodesConnection` is aio-pika's ``RobustConnection`` with
a list of nodes instead of one URL (chosen over an outer loop around ``connect_robust``,
which would have to rebuild every robust channel, queue and consumer on a new connection
object, the very replay aio-pika already does): everything aio-pika replays after a
reconnect (robust channels, exchanges, queues, bindings, consumers, prefetch, our own
``reconnect_callbacks``) is replayed on whichever node answers next.

- The first connect tries the nodes in the order given and keeps the first that
  answers; only when none does it raise, naming each node's error.
- After a loss (the node died, its connection was cut, a heartbeat missed) the next
  attempt goes to the next node, wrapping around: ``[a, b, c]`` on ``b`` goes on with
  ``c``, then ``a``. There is no pause between the nodes of one round; after a whole
  round of failures, aio-pika's ``reconnect_interval`` (5 s unless the first URL says
  ``reconnect_interval=``), then the next round.
- A connection stays on the node it reached: a node that comes back gets new
  connections, not the old ones back (moving them would cost a redelivery of every
  unacked message for nothing).

Each URL keeps its own credentials, vhost, heartbeat and TLS options (checked per URL
by :mod:`taskq.brokers.amqp_options`); one ``ssl_context`` applies to every ``amqps://``
node. What this leans on of aio-pika 10 (``RobustConnection``): the transport is made
from ``self.url`` and ``self.kwargs`` on each attempt, ``_on_connection_close`` runs
after every lost connection and every failed attempt, and ``reconnect_interval`` is read
after each attempt. The fault suite's cluster tests (tests/faults/test_cluster.py) run
it against three real nodes.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aio_pika import RobustConnection
from aio_pika.connection import make_url
from yarl import URL

from taskq.brokers.amqp_options import connect_options
from taskq.logs import get_logger
from taskq.urls import mask_url, scrub

log = get_logger("taskq.brokers.amqp")  # the broker's lines keep its logger name

#: Options of aio-pika's robust connection itself, read from the first URL only: one
#: connection has one reconnect policy, whichever node it is on.
_CONNECTION_OPTIONS = ("reconnect_interval", "fail_fast")


@dataclass(frozen=True)
class BrokerNode:
    """One node: its URL as given (for messages, masked) and as aio-pika connects to it,
    with taskq's defaults (the heartbeat) filled in where the URL says nothing."""

    url: str
    target: URL
    ssl_context: ssl.SSLContext | None = None

    @classmethod
    def from_url(cls, url: str, ssl_context: ssl.SSLContext | None = None) -> BrokerNode:
        """Raises :class:`~taskq.errors.ConfigurationError` for what the URL says wrong."""
        options = dict(connect_options(url, ssl_context))
        context = options.pop("ssl_context", None)
        # The remaining keywords (the heartbeat) go into the URL's query, as
        # connect_robust would put them (aio_pika.make_url).
        return cls(url, make_url(url, **options), context)

    @property
    def display_url(self) -> str:
        return mask_url(self.url)


def next_node(current: int, count: int) -> int:
    """The node tried after losing node ``current`` of ``count``: the next, wrapping."""
    return (current + 1) % count


class NodesConnection(RobustConnection):
    """A robust connection that moves to the next node on each lost connection or
    failed attempt (see the module docstring). Made by :func:`connect_nodes`."""

    def __init__(
        self,
        nodes: Sequence[BrokerNode],
        *,
        start: int = 0,
        client_properties: Mapping[str, Any] | None = None,
    ) -> None:
        if not nodes:
            raise ValueError("a connection needs at least one node")
        self._nodes = tuple(nodes)
        self._node = start
        #: Failed attempts and losses since the last connect that worked.
        self._failures = 0
        self._interval: float = 5.0
        # Made on the first node, whose URL holds the reconnect policy, then aimed at
        # ``start``.
        first = self._nodes[0]
        super().__init__(
            first.target,
            ssl_context=first.ssl_context,
            client_properties=dict(client_properties or {}),
        )
        self._client_properties = self.kwargs.get("client_properties")
        if start:
            self._move_to(start)

    @property
    def node(self) -> BrokerNode:
        """The node this connection is on, or is about to try."""
        return self._nodes[self._node]

    # aio-pika sleeps this long after each attempt, before the next (RobustConnection's
    # connection factory). Nothing while some node of this round is still untried; with
    # one node, aio-pika's own timing, unchanged.
    @property
    def reconnect_interval(self) -> float:
        count = len(self._nodes)
        return 0.0 if 1 < count and self._failures < count else self._interval

    @reconnect_interval.setter
    def reconnect_interval(self, value: float) -> None:
        self._interval = value

    def _move_to(self, index: int) -> None:
        """Aim the next attempt at node ``index``: aio-pika builds each transport from
        ``self.url`` and ``self.kwargs``, as its constructor parsed them from the URL."""
        node = self._nodes[index]
        kwargs = self._parse_parameters(dict(node.target.query))
        for name in _CONNECTION_OPTIONS:
            kwargs.pop(name, None)
        kwargs["context"] = node.ssl_context
        if self._client_properties is not None:
            kwargs["client_properties"] = self._client_properties
        self._node = index
        self.url = node.target
        self.kwargs = kwargs

    async def _on_connection_close(self, closing: asyncio.Future[Any]) -> None:
        # After a lost connection, and after a failed attempt (aio-pika calls this with
        # the attempt's error): the next attempt goes to the next node.
        if not (self._close_called or self.is_closed):
            self._failures += 1
            lost = self.node
            self._move_to(next_node(self._node, len(self._nodes)))
            if len(self._nodes) > 1:
                log.info(
                    "broker node lost; trying the next",
                    lost=lost.display_url,
                    next=self.node.display_url,
                )
        await super()._on_connection_close(closing)

    async def _on_connected(self) -> None:
        reconnected = self.connection_attempt > 0
        await super()._on_connected()  # replays channels; raises if that fails
        self._failures = 0
        if reconnected and len(self._nodes) > 1:
            log.info("broker node connected", url=self.node.display_url)


async def connect_nodes(
    nodes: Sequence[BrokerNode],
    *,
    timeout: float,
    client_properties: Mapping[str, Any] | None = None,
) -> NodesConnection:
    """A connection to the first of ``nodes`` that answers, in order, each given
    ``timeout`` seconds. Raises the first node's error when there is one node
    (``fail_fast``: a wrong password surfaces at once), else :class:`NoNodeAnswered`
    with each node's error."""
    errors: list[tuple[BrokerNode, BaseException]] = []
    for index, node in enumerate(nodes):
        connection = NodesConnection(nodes, start=index, client_properties=client_properties)
        try:
            await connection.connect(timeout=timeout)
        except BaseException as exc:
            await connection.close()
            if len(nodes) == 1 or not isinstance(exc, Exception):
                raise
            log.info(
                "broker node did not answer", url=node.display_url, error=scrub(repr(exc), node.url)
            )
            errors.append((node, exc))
            continue
        return connection
    raise NoNodeAnswered(errors)


class NoNodeAnswered(ConnectionError):
    """No node of the list answered the first connect; ``errors`` holds each node's.
    A ``ConnectionError``, which the broker's error boundary translates, with each
    node's reason (masked) in its message."""

    def __init__(self, errors: Sequence[tuple[BrokerNode, BaseException]]) -> None:
        self.errors = list(errors)
        super().__init__(
            "no broker node answered: "
            + "; ".join(f"{node.display_url}: {scrub(repr(exc), node.url)}" for node, exc in errors)
        )
