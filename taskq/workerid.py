"""Worker ids: ``<hostname>-<pid>``, the pair lifecycle events already carry (``host``,
``pid``), so an id in a status record, a log line and an event all name the same
process. A second :class:`~taskq.worker.Worker` object in one process gets ``-2``, a
third ``-3``: each has its own control and broadcast queues."""

from __future__ import annotations

import itertools
import os
import socket

#: Worker objects made so far in this process (after a fork, counted afresh by pid).
_made: dict[int, itertools.count[int]] = {}


def new_worker_id() -> str:
    pid = os.getpid()
    number = next(_made.setdefault(pid, itertools.count(1)))
    base = f"{socket.gethostname()}-{pid}"
    return base if number == 1 else f"{base}-{number}"
