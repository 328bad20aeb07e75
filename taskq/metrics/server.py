"""Serving the metrics over HTTP, for one worker process or a supervisor's children.

One process: the worker's own registry, served from a thread of its own (the event loop
is never asked to answer a scrape). Under the supervisor (``--processes N``), every
child writes its figures to files of prometheus_client's multiprocess mode in a folder
the supervisor made (``PROMETHEUS_MULTIPROC_DIR`` in the children's environment), and
the supervisor alone listens, serving the sum of every child's files: one port for all
of them. A child that died leaves its files, so its counters and histograms are still
counted; its ``taskq_tasks_running`` is dropped (:func:`child_exited`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from taskq.errors import ConfigurationError

#: Where prometheus_client's multiprocess mode keeps the children's figures.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: The worker's metrics listen here unless told otherwise: not on every interface.
DEFAULT_HOST = "127.0.0.1"


@dataclass
class MetricsServer:
    """A running metrics endpoint; :meth:`close` stops it."""

    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve(registry: CollectorRegistry, *, port: int, host: str = DEFAULT_HOST) -> MetricsServer:
    """Serve ``registry`` at ``http://host:port/`` (any path) from a daemon thread.
    ``port=0`` picks a free one (see :attr:`MetricsServer.port`). Raises
    :class:`~taskq.errors.ConfigurationError` when the address cannot be bound."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from None
    return MetricsServer(server, thread)


class ChildrenMetrics:
    """The supervisor's side: the folder its children write to, and the endpoint that
    serves their sum. Use as a context manager; the folder is removed at the end."""

    def __init__(self, *, port: int, host: str = DEFAULT_HOST) -> None:
        self.port, self.host = port, host
        self.directory = ""
        self._server: MetricsServer | None = None

    def __enter__(self) -> ChildrenMetrics:
        self.directory = tempfile.mkdtemp(prefix="taskq-metrics-")
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        try:
            self._server = serve(registry, port=self.port, host=self.host)
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        return self

    def environment(self) -> dict[str, str]:
        """What a child's environment needs to write its figures here."""
        return {MULTIPROC_ENV: self.directory}

    def child_exited(self, pid: int) -> None:
        """Drop the dead child's live gauges; its counters stay counted."""
        mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def __exit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def in_child() -> bool:
    """Whether this process writes multiprocess files for a supervisor to serve."""
    return bool(os.environ.get(MULTIPROC_ENV))
