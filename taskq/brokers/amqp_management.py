"""RabbitMQ's management HTTP API, read-only, for what AMQP itself cannot tell.

A passive ``queue.declare`` answers with a queue's ready messages and consumers only;
the unacked count, and which queues are bound to an exchange, are known to the
management plugin alone. ``taskq queues`` asks it when it answers and falls back to
passive declares when it does not (the plugin is often disabled). The figures are the
plugin's samples, refreshed every ``collect_statistics_interval`` (5 s by default), so
they may lag a few seconds behind the broker.

Plain ``urllib``: a few GETs do not justify an HTTP client dependency.

    api = ManagementApi.for_amqp_url("amqp://guest:guest@127.0.0.1:5672/")
    api.queues()                    # {"taskq.emails.send": QueueInfo(...), ...}
    api.bound_queues("taskq")       # ["taskq.emails.send", ...]
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from taskq.brokers.base import QueueInfo
from taskq.errors import TaskqError
from taskq.urls import mask_url

#: The management plugin's ports: HTTP beside amqp://, HTTPS beside amqps://.
HTTP_PORT = 15672
HTTPS_PORT = 15671
#: The environment variable ``taskq queues`` and ``taskq dashboard`` read when
#: ``--management-url`` is not given.
MANAGEMENT_URL_ENV = "TASKQ_MANAGEMENT_URL"
#: Seconds to wait for an answer: a closed port fails at once, a filtered one must not
#: hold an operator's command for long.
TIMEOUT = 3.0


class ManagementUnavailable(TaskqError):
    """The management API did not answer, refused our credentials, or answered
    something else than its JSON."""


class _Unreachable(ManagementUnavailable):
    """Nothing answered there: another node's API may."""


@dataclass(frozen=True)
class ManagementApi:
    """One broker's management API: its base URL (``http://host:15672``) and vhost."""

    base_url: str
    vhost: str = "/"
    username: str = field(default="guest", repr=False)
    password: str = field(default="guest", repr=False)
    #: Where to ask next when this one does not answer: the APIs beside the other
    #: nodes of a broker given as a list (any node's API answers for the cluster).
    others: tuple[ManagementApi, ...] = field(default=(), repr=False)

    @classmethod
    def for_amqp_url(cls, amqp_url: str, management_url: str | None = None) -> ManagementApi:
        """The API beside the broker of ``amqp_url``, with its credentials and vhost;
        ``management_url`` (``http://user:pass@host:port``) overrides where it lives
        and, if it has them, the credentials."""
        amqp = urlsplit(amqp_url)
        vhost = unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        username, password = unquote(amqp.username or "guest"), unquote(amqp.password or "guest")
        if management_url is None:
            tls = amqp.scheme == "amqps"
            host = amqp.hostname or "localhost"
            host = f"[{host}]" if ":" in host else host
            base = f"{'https' if tls else 'http'}://{host}:{HTTPS_PORT if tls else HTTP_PORT}"
        else:
            given = urlsplit(management_url)
            if given.username is not None:
                username, password = unquote(given.username), unquote(given.password or "")
            netloc = given.netloc.rpartition("@")[2]
            base = f"{given.scheme}://{netloc}{given.path.rstrip('/')}"
        return cls(base, vhost, username, password)

    @property
    def display_url(self) -> str:
        return mask_url(self.base_url)

    def queues(self) -> dict[str, QueueInfo]:
        """Every queue of the vhost, by name, with its type and where it lives: a
        quorum queue's leader and members, a classic queue's node."""
        rows = self._get(
            f"/api/queues/{self._vhost}?columns=name,messages_ready,messages_unacknowledged,"
            "consumers,type,leader,members,node"
        )
        return {
            row["name"]: QueueInfo(
                name=row["name"],
                ready=int(row.get("messages_ready") or 0),
                consumers=int(row.get("consumers") or 0),
                unacked=int(row.get("messages_unacknowledged") or 0),
                queue_type=row.get("type"),
                leader=row.get("leader") or row.get("node"),
                members=tuple(row["members"]) if isinstance(row.get("members"), list) else None,
            )
            for row in rows
        }

    def bound_queues(self, exchange: str) -> list[str]:
        """The queues bound to ``exchange``, each once, sorted."""
        rows = self._get(f"/api/exchanges/{self._vhost}/{quote(exchange, safe='')}/bindings/source")
        return sorted({row["destination"] for row in rows if row["destination_type"] == "queue"})

    @property
    def _vhost(self) -> str:
        return quote(self.vhost, safe="")

    def _get(self, path: str) -> list[dict[str, Any]]:
        try:
            return self._get_here(path)
        except _Unreachable as exc:
            for other in self.others:
                try:
                    return other._get_here(path)
                except _Unreachable:
                    continue
            raise ManagementUnavailable(str(exc)) from None

    def _get_here(self, path: str) -> list[dict[str, Any]]:
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request = urllib.request.Request(
            self.base_url + path,
            headers={"Authorization": f"Basic {token}", "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                rows = json.load(response)
        except urllib.error.HTTPError as exc:
            raise ManagementUnavailable(
                f"the management API at {self.display_url} answered {exc.code} {exc.reason}"
            ) from None
        except (OSError, ValueError) as exc:  # URLError, refused, timed out; not JSON
            reason = f"{type(exc).__name__}: {exc}"
            if self.password:  # never echoed that we know of; never shown if it were
                reason = reason.replace(self.password, "***")
            raise _Unreachable(f"no management API at {self.display_url} ({reason})") from None
        if not isinstance(rows, list):
            raise ManagementUnavailable(f"the management API at {self.display_url} sent {rows!r}")
        return rows
