"""Three private RabbitMQ nodes joined in one cluster, for the failover checks (issue 17).

The fault suite's private node (``tests/faults/servers.py``) three times, kept apart from
the machine's broker and from each other:

- each node its own name (``taskq-cluster-<run>-<n>@localhost``), AMQP and distribution
  ports, data, logs, pid and config files under one temporary directory;
- one shared ``HOME`` holding one ``.erlang.cookie`` (mode 400), written before any node
  boots: nodes that boot together would otherwise each make their own;
- a private epmd on a port of its own (``ERL_EPMD_PORT``), started here and stopped at
  :meth:`RabbitCluster.close`, so that neither the nodes nor their ``rabbitmqctl`` calls
  meet the machine's node (``rabbit@localhost``) in its epmd; ``rabbitmqctl`` takes its
  own distribution port from a range of each node's own;
- memory capped per node (``vm_memory_high_watermark.absolute``): the default is 40% of
  the machine's RAM for each.

The three boot in parallel, then nodes 2 and 3 ``join_cluster`` node 1 (about 20-25 s on
two cores). ``rabbitmqctl`` costs about a second of CPU a call: the tests call it a
handful of times, never in a polling loop.

    with RabbitCluster() as cluster:
        urls = cluster.urls()              # the three nodes' AMQP URLs, in order
        cluster.leader("taskq.fault.touch")  # the node leading a quorum queue
        cluster.nodes[0].kill(); cluster.nodes[0].start()  # kill -9, then back
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import string
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from tests.faults.servers import (
    Managed,
    RabbitNode,
    ServerError,
    free_port,
    kill_processes_naming,
    port_open,
)

#: Per node: a node idles at 120-145 MiB here; the alarm must not stop a test's publishes.
MEMORY_LIMIT = "400MB"


def free_range(size: int, *, tries: int = 50) -> tuple[int, int]:
    """``size`` consecutive ports free on 127.0.0.1 right now: (first, last)."""
    for _ in range(tries):
        first = 20000 + secrets.randbelow(12000)
        socks: list[socket.socket] = []
        try:
            for port in range(first, first + size):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return first, first + size - 1
    raise ServerError(f"no {size} consecutive free ports found")


class RabbitCluster(Managed):
    """Three :class:`RabbitNode` in one cluster (see the module docstring)."""

    def __init__(self, size: int = 3, *, config: list[str] | None = None) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="taskq-rabbit-cluster-"))
        (self.base_dir / "owner.pid").write_text(str(os.getpid()))
        self.home = self.base_dir / "home"
        self.epmd_port = free_port()
        self._epmd: subprocess.Popen[bytes] | None = None
        run = uuid.uuid4().hex[:6]
        for n in range(1, size + 1):
            (self.base_dir / f"node{n}").mkdir()
        self.nodes = [
            RabbitNode(
                name=f"taskq-cluster-{run}-{n}",
                base_dir=self.base_dir / f"node{n}",
                home=self.home,
                epmd_port=self.epmd_port,
                ctl_ports=free_range(4),
                config=[
                    f"vm_memory_high_watermark.absolute = {MEMORY_LIMIT}",
                    # As the README advises for production: a node cut off from the
                    # others pauses instead of going on alone.
                    "cluster_partition_handling = pause_minority",
                    *(config or []),
                ],
            )
            for n in range(1, size + 1)
        ]
        self._closed = False

    def __repr__(self) -> str:
        return f"<RabbitCluster {', '.join(str(node.port) for node in self.nodes)}>"

    def urls(self, order: list[int] | None = None) -> list[str]:
        """The nodes' AMQP URLs, in ``order`` (indexes) or as made."""
        return [self.nodes[i].amqp_url for i in (order or range(len(self.nodes)))]

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> None:
        self._write_cookie()
        self._start_epmd()
        with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
            for done in [pool.submit(node.start) for node in self.nodes]:
                done.result()
        first = self.nodes[0].node
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", first)
            node.start_app()

    def _write_cookie(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text("".join(secrets.choice(string.ascii_uppercase) for _ in range(20)))
        cookie.chmod(0o400)

    def _start_epmd(self) -> None:
        binary = shutil.which("epmd") or next(
            (str(p) for p in Path("/usr/lib/erlang").glob("erts-*/bin/epmd")), None
        )
        if binary is None:
            raise ServerError("epmd is not installed")
        self._epmd = subprocess.Popen(
            [binary, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        # For sweep_leftovers, should this run be killed before its clean-up.
        (self.base_dir / "epmd.pid").write_text(f"{self._epmd.pid} {self.epmd_port}")
        deadline = time.monotonic() + 10
        while not port_open(self.epmd_port):
            if self._epmd.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"the private epmd on {self.epmd_port} did not start")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop every node and the epmd, then delete every file. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            with concurrent.futures.ThreadPoolExecutor(len(self.nodes)) as pool:
                list(pool.map(lambda node: node.close(), self.nodes))
        finally:
            for node in self.nodes:
                node.kill()
            if self._epmd is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self._epmd.pid, signal.SIGKILL)
                self._epmd.wait(10)
            # A node restarted by a test whose pid file still named its old process
            # outlived the kills above once: anything naming this cluster goes.
            kill_processes_naming(str(self.base_dir))
            shutil.rmtree(self.base_dir, ignore_errors=True)

    # -- what the cluster says ------------------------------------------------------

    def running_node(self) -> RabbitNode:
        """A node that is up, to ask."""
        for node in self.nodes:
            if node.running and port_open(node.port):
                return node
        raise ServerError("no node of the cluster is running")

    def queues(self) -> dict[str, dict[str, object]]:
        """Each queue's type, leader and members, as ``rabbitmqctl list_queues`` says
        (one call: about a second of CPU)."""
        out = self.running_node().ctl(
            "list_queues", "name", "type", "leader", "members", "--formatter", "json"
        )
        return {row["name"]: row for row in json.loads(out)}

    def leader(self, queue: str) -> RabbitNode:
        """The node leading quorum queue ``queue`` now."""
        name = self.queues()[queue]["leader"]
        for node in self.nodes:
            if node.node == name:
                return node
        raise ServerError(f"{queue} is led by {name}, not a node of {self}")
