"""``?wait_replicas=N``: a worker acks a message only once its outcome is on N replicas.

Redis replicates asynchronously: a primary that dies a moment after answering a write
may take the write with it, and the replica the sentinels promote never had it. The
worker has acked the message by then, so the task would be neither recorded nor run
again. ``WAIT N timeout`` at the end of the same pipeline answers only once N replicas
hold every write before it (or the timeout passed): with it, an acked outcome is on a
replica. Fewer replicas than asked is a :class:`~taskq.errors.StoreError`, so the
worker requeues the message as for any store failure; the outcome may have been
written anyway, and the redelivery then finds it recorded.

Only batches holding a worker's moves wait: a publisher's ``queued`` records are not
what an ack depends on (the message is in the broker, and the worker's ``started``
creates a record that a failover lost), and a send must not fail while a promoted
primary has no replica yet. Cancels, resets and the other records (workflows, rate
limits, schedules) do not wait either.

``?wait_timeout=`` (milliseconds, default :data:`WAIT_TIMEOUT_MS`) bounds the wait.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from taskq.errors import ConfigurationError
from taskq.stores.base import Write
from taskq.urls import mask_url

#: Milliseconds a batch waits for its replicas before it counts as failed: a replica on
#: a healthy network acknowledges in well under a millisecond; one that has not in a
#: second is away, and the worker had better requeue than hold the message.
WAIT_TIMEOUT_MS = 1000

_OPTIONS = ("wait_replicas", "wait_timeout")


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    #: Replicas every batch of a worker's writes waits for; 0: no WAIT at all.
    count: int = 0
    timeout_ms: int = WAIT_TIMEOUT_MS

    @classmethod
    def from_url(cls, url: str, *, default: int) -> ReplicaWait:
        options = dict(parse_qsl(urlsplit(url).query, keep_blank_values=True))
        try:
            count = int(options.get("wait_replicas", default))
            timeout_ms = int(options.get("wait_timeout", WAIT_TIMEOUT_MS))
        except ValueError:
            raise ConfigurationError(
                f"store URL {mask_url(url)!r}: wait_replicas and wait_timeout are whole "
                "numbers (replicas, milliseconds)"
            ) from None
        if count < 0 or timeout_ms <= 0:
            raise ConfigurationError(
                f"store URL {mask_url(url)!r}: wait_replicas must be 0 or more and "
                "wait_timeout (milliseconds) more than 0"
            )
        return cls(count, timeout_ms)

    @staticmethod
    def strip(url: str) -> str:
        """``url`` without our options, which redis-py would pass on to its connections
        (and fail on)."""
        parts = urlsplit(url)
        if not parts.query:
            return url
        kept = [p for p in parts.query.split("&") if p.partition("=")[0] not in _OPTIONS]
        return urlunsplit(parts._replace(query="&".join(kept)))

    def applies_to(self, writes: Sequence[Write]) -> bool:
        """Whether a batch waits: it holds a move that is not a publisher's create."""
        return self.count > 0 and any(not w.only_if_absent for w in writes)

    def add_to(self, pipe: Any) -> None:
        """The WAIT, last in ``pipe``: its reply is the pipeline's last."""
        pipe.execute_command("WAIT", self.count, self.timeout_ms)

    def shortfall(self, acked: Any) -> str | None:
        """What went wrong, if WAIT's reply counts fewer replicas than asked for."""
        if int(acked) >= self.count:
            return None
        return (
            f"written, but {acked} of {self.count} replicas acknowledged the writes "
            f"within {self.timeout_ms} ms (wait_replicas)"
        )
