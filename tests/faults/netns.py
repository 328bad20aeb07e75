"""Hosts on a network of their own, on one machine: Linux network namespaces.

    with Network(["broker", "store", "w1", "w2"]) as net:
        w1 = net.hosts["w1"]                   # 10.254.N.12 inside its namespace
        subprocess.Popen([*w1.prefix, "python", ...])   # runs on that host
        net.cut(w1)        # its cable pulled: silent, no RST, both ways
        net.restore(w1)

Every host is a namespace of its own (``taskq-net-<pid>-<tag>-<host>``) with its
loopback and one ``eth0`` (a veth pair) plugged into a bridge that lives in a further
namespace (``...-switch``): the machine's own interfaces, addresses and routes are never
touched. :meth:`Network.cut` sets the host's port on the switch down: the host's
``eth0`` stays configured, packets into and out of it are dropped, nobody is told. The
namespaces are deleted by :meth:`Network.close` after the processes in them are
killed; :func:`sweep_namespaces` removes those of a test run that died.

Needs root and iproute2's ``ip`` (:func:`unavailable` says why not). A RabbitMQ node
(:class:`NetRabbitNode`) and a redis-server (:class:`NetRedis`) run inside a host; the
test's own process reaches the Redis through a Unix socket (namespaces do not separate
the file system) and the node through ``rabbitmqctl`` run inside its host.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tests.faults.servers import Managed, RabbitNode, RedisServer, ServerError

NS_PREFIX = "taskq-net-"


def unavailable() -> str | None:
    """Why namespaces cannot be made here, or ``None``."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "iproute2's ip is not installed (apt-get install iproute2)"
    return None


def _ip(*args: str) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, timeout=15)
    if done.returncode != 0:
        raise ServerError(f"ip {' '.join(args)}: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def _kill_inside(namespace: str) -> None:
    with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
        for pid in _ip("netns", "pids", namespace).split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)


def _delete(namespace: str) -> None:
    _kill_inside(namespace)
    with contextlib.suppress(ServerError, subprocess.TimeoutExpired):
        _ip("netns", "del", namespace)


def sweep_namespaces() -> None:
    """Delete the namespaces (and kill the processes in them) of test runs whose
    process is gone."""
    with contextlib.suppress(ServerError, subprocess.TimeoutExpired, FileNotFoundError):
        for line in _ip("netns", "list").splitlines():
            name = line.split()[0] if line.split() else ""
            if not name.startswith(NS_PREFIX):
                continue
            with contextlib.suppress(ValueError, IndexError):
                owner = int(name[len(NS_PREFIX) :].split("-")[0])
                try:
                    os.kill(owner, 0)
                except ProcessLookupError:
                    _delete(name)


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    #: Its port's interface on the switch.
    port: str

    @property
    def prefix(self) -> list[str]:
        """What runs a command on this host."""
        return ["ip", "netns", "exec", self.namespace]


class Network(Managed):
    def __init__(self, hosts: Sequence[str]) -> None:
        tag = f"{NS_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:6]}"
        subnet = f"10.254.{random.randint(1, 254)}"
        self.switch = f"{tag}-switch"
        self.hosts = {
            name: Host(name, f"{tag}-{name}", f"{subnet}.{10 + n}", f"port{n}")
            for n, name in enumerate(hosts)
        }
        self._made: list[str] = []

    def start(self) -> None:
        _ip("netns", "add", self.switch)
        self._made.append(self.switch)
        _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            ns = host.namespace
            _ip("netns", "add", ns)
            self._made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", host.port,
                "netns", self.switch)  # fmt: skip
            _ip("-n", self.switch, "link", "set", host.port, "master", "br0")
            _ip("-n", self.switch, "link", "set", host.port, "up")
            _ip("-n", ns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", ns, "link", "set", "eth0", "up")

    def cut(self, host: Host) -> None:
        """Pull the host's cable at the switch: silent both ways."""
        _ip("-n", self.switch, "link", "set", host.port, "down")

    def restore(self, host: Host) -> None:
        _ip("-n", self.switch, "link", "set", host.port, "up")

    def close(self) -> None:
        for namespace in reversed(self._made):
            _delete(namespace)
        self._made.clear()

    def port_open(self, host: Host, address: str, port: int) -> bool:
        """Whether ``address:port`` answers a TCP connect made from ``host``."""
        probe = (
            "import socket,sys\n"
            "try:\n"
            f"    socket.create_connection(({address!r}, {port}), timeout=1).close()\n"
            "except OSError:\n"
            "    sys.exit(1)\n"
        )
        done = subprocess.run([*host.prefix, sys.executable, "-c", probe], timeout=15)
        return done.returncode == 0


class NetRedis(RedisServer):
    """A redis-server on ``host``, also on a Unix socket for the test's own process."""

    def __init__(self, host: Host) -> None:
        super().__init__()
        self.host = host
        self.socket = self.dir / "redis.sock"

    def __repr__(self) -> str:
        return f"<NetRedis {self.host.address}:{self.port}>"

    @property
    def url(self) -> str:
        return f"redis://{self.host.address}:{self.port}/0"

    @property
    def pid(self) -> int:
        """The server's process id (0 when it is not running)."""
        return self._proc.pid if self._proc is not None else 0

    @property
    def local_url(self) -> str:
        """The same server through its Unix socket: for the test's process."""
        return f"unix://{self.socket}?db=0"

    def command(self) -> list[str]:
        command = super().command()
        command[command.index("--bind") + 1] = self.host.address
        return [
            *self.host.prefix,
            *command,
            "--protected-mode", "no",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
        ]  # fmt: skip

    def ready(self) -> bool:
        import socket

        if not self.socket.exists():
            return False
        with socket.socket(socket.AF_UNIX) as sock:
            try:
                sock.connect(str(self.socket))
            except OSError:
                return False
        return True


class NetRabbitNode(RabbitNode):
    """A private RabbitMQ node (``servers.RabbitNode``) on ``host``: listening on the
    host's address, its epmd and distribution on the host's own loopback, ``guest``
    allowed in from other hosts; ``rabbitmq-server`` and ``rabbitmqctl`` run inside the
    host through two wrapper scripts."""

    def __init__(self, host: Host, *, config: Sequence[str] = (), **options: Any) -> None:
        super().__init__(config=["loopback_users.guest = false", *config], **options)
        self.host = host
        for name, real in (
            ("rabbitmq-server", self._server_script),
            ("rabbitmqctl", self._ctl_script),
        ):
            wrapper = self.base_dir / name
            wrapper.write_text(f'#!/bin/sh\nexec {" ".join(host.prefix)} {real} "$@"\n')
            wrapper.chmod(0o755)
        self._server_script = str(self.base_dir / "rabbitmq-server")
        self._ctl_script = str(self.base_dir / "rabbitmqctl")
        self._network: Network | None = None

    def __repr__(self) -> str:
        return f"<NetRabbitNode {self.node} {self.host.address}:{self.port}>"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@{self.host.address}:{self.port}/"

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["RABBITMQ_NODE_IP_ADDRESS"] = self.host.address
        return env

    def _wait_port(self, timeout: float) -> None:
        # `rabbitmqctl wait` returned: the listener is up on the host's address. It
        # cannot be probed from here (another network); the first client finds out.
        del timeout

    def queue_depths(self, prefix: str) -> dict[str, int]:
        """Ready + unacked messages in each queue named ``prefix...``, by rabbitmqctl."""
        out = self.ctl("list_queues", "name", "messages", "--no-table-headers")
        depths = {}
        for line in out.splitlines():
            name, _, count = line.strip().partition("\t")
            if name.startswith(prefix):
                depths[name] = int(count or 0)
        return depths
