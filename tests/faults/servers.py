"""Private servers for fault tests: a RabbitMQ node and a redis-server of the test run's
own, on free loopback ports, that a test may stop, kill -9 and start again without
touching the machine's shared services (rabbit@localhost on 5672, Redis on 6379).

    node = RabbitNode(config=["consumer_timeout = 5000"])
    node.start()                      # boots, returns once the app is running
    app = TaskQueue(broker=node.amqp_url, ...)
    node.stop_app(); node.start_app() # a broker restart, data kept
    node.kill(); node.start()         # kill -9 of its beam process, then a cold start
    node.ctl("list_queues")           # any rabbitmqctl command, against this node only
    node.close()                      # stop, then delete every file it wrote

    redis = RedisServer()             # --save "" --appendonly no: nothing on disk
    redis.start()
    redis.stop(save=True); redis.start()   # away and back, data kept (SHUTDOWN SAVE)
    redis.kill(); redis.start()            # kill -9: back without what came since
    redis.close()

Both are context managers (``with RabbitNode() as node:``: started on entry, closed on
exit, even on failure). The pytest fixtures live in ``tests/faults/conftest.py``
(``rabbit_node``: one node per session; ``private_redis``: one server per test).

How the node is kept apart from the machine's broker:

- its own node name (``taskq-fault-<random>@localhost``), AMQP port, Erlang
  distribution port, data, logs and pid file under one temporary directory;
- its own ``RABBITMQ_CONF_ENV_FILE`` (the machine's ``rabbitmq-env.conf`` names
  ``rabbit@localhost``, which must never be ours) and ``RABBITMQ_CONFIG_FILE``;
- its own ``RABBITMQ_ENABLED_PLUGINS_FILE``, empty unless ``plugins`` names some: no
  management listener on 15672 (a test that enables ``rabbitmq_management`` gives it a
  free port of 127.0.0.1 in ``config``);
- its own ``HOME``, hence its own Erlang cookie, used by the ``rabbitmqctl -n`` calls
  made through :meth:`RabbitNode.ctl`;
- everything bound to 127.0.0.1 (AMQP listener, distribution, epmd).

It runs the scripts in ``/usr/lib/rabbitmq/bin`` directly (Debian's wrappers in
/usr/sbin switch to the ``rabbitmq`` user and its cookie), as whoever runs the tests.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

#: Where Debian's package keeps the real scripts; elsewhere they are on PATH.
_DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")

#: A cold boot of RabbitMQ 3.10 takes 5-10 s on a 2-core machine; after a kill -9 it
#: also recovers its queues' data.
START_TIMEOUT = 90.0


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def sweep_leftovers() -> None:
    """Stop the private servers that a test run killed before its clean-up left behind
    (each directory names the pid of the process that made it, now dead) and delete
    their files. Only processes whose command line names that directory are killed."""
    for directory in Path(tempfile.gettempdir()).glob("taskq-r*-*"):
        if not directory.name.startswith(("taskq-rabbit-", "taskq-redis-")):
            continue
        try:
            owner = int((directory / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        # The beam's command line names its home directory; redis-server retitles
        # itself "redis-server 127.0.0.1:<port>". A cluster's nodes each have a
        # directory of their own inside (tests/faults/cluster.py), and its epmd a pid.
        for pid_file in (directory / "node.pid", *directory.glob("node*/node.pid")):
            with contextlib.suppress(OSError, ValueError):
                pid = int(pid_file.read_text())
                if str(pid_file.parent).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            pid_text, port_text = (directory / "epmd.pid").read_text().split()
            cmdline = Path(f"/proc/{int(pid_text)}/cmdline").read_bytes()
            if b"epmd" in cmdline and f"\x00{int(port_text)}\x00".encode() in cmdline:
                os.kill(int(pid_text), signal.SIGKILL)
        with contextlib.suppress(OSError, ValueError):
            pid = int((directory / "server.pid").read_text())
            port = int((directory / "port").read_text())
            if f"127.0.0.1:{port}".encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(directory, ignore_errors=True)
    # Nodes whose directory is gone already (deleted under a node that outlived it).
    kill_processes_naming(f"{tempfile.gettempdir()}/taskq-rabbit-", only_if_gone=True)


def kill_processes_naming(path: str, *, only_if_gone: bool = False) -> int:
    """SIGKILL every process whose command line names ``path`` (a private server's
    directory; a beam names its home in it), or with ``only_if_gone`` every process
    naming a directory under ``path`` that no longer exists: a node restarted by a
    test whose pid file still named the old process outlived its clean-up once.
    Returns how many were killed."""
    killed = 0
    needle = path.encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            words = (proc / "cmdline").read_bytes().split(b"\x00")
        except OSError:
            continue
        named = [w for w in words if needle in w]
        if not named:
            continue
        if only_if_gone:
            start = named[0].index(needle)
            # The directory right under ``path`` that the word names.
            tail = named[0][start + len(needle) :].split(b"/")[0]
            if Path(os.fsdecode(needle + tail)).exists():
                continue
        with contextlib.suppress(OSError):
            os.kill(int(proc.name), signal.SIGKILL)
            killed += 1
    return killed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def rabbitmq_available() -> bool:
    return _script("rabbitmq-server") is not None and _script("rabbitmqctl") is not None


def _script(name: str) -> str | None:
    candidate = _DEBIAN_SCRIPTS / name
    if candidate.is_file():
        return str(candidate)
    return shutil.which(name)


class ServerError(RuntimeError):
    """A private server did not start or stop as asked; the message holds its log tail."""


class Managed:
    """``with X() as x:``: :meth:`start` on entry, :meth:`close` on exit, even when the
    start itself failed half-way (so nothing is left running or on disk)."""

    def start(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RabbitNode(Managed):
    """A RabbitMQ node of the test run's own (see the module docstring).

    ``config``: extra lines for its ``rabbitmq.conf`` (new-style sysctl format), e.g.
    ``["consumer_timeout = 5000", "max_message_size = 1048576"]`` or TLS listener lines
    (``listeners.ssl.default = 127.0.0.1:<port>``, ``ssl_options.cacertfile = ...``).
    ``advanced``: the text of its ``advanced.config`` (Erlang terms), for settings
    ``rabbitmq.conf`` cannot express, e.g. ``"[{rabbit, [{channel_tick_interval, 500}]}]."``.
    ``plugins``: the plugins to enable (its ``enabled_plugins`` file; their dependencies
    come along), e.g. ``["rabbitmq_management"]``; none by default.
    ``port`` and ``dist_port`` default to free ones. Nothing runs until :meth:`start`.
    """

    def __init__(
        self,
        *,
        config: Sequence[str] = (),
        advanced: str | None = None,
        plugins: Sequence[str] = (),
        name: str | None = None,
        port: int | None = None,
        dist_port: int | None = None,
        base_dir: Path | None = None,
        home: Path | None = None,
        epmd_port: int | None = None,
        ctl_ports: tuple[int, int] | None = None,
    ) -> None:
        server, ctl = _script("rabbitmq-server"), _script("rabbitmqctl")
        if server is None or ctl is None:
            raise ServerError("rabbitmq-server / rabbitmqctl are not installed")
        self._server_script = server
        self._ctl_script = ctl
        self.node = f"{name or 'taskq-fault-' + uuid.uuid4().hex[:8]}@localhost"
        self.port = port or free_port()
        self.dist_port = dist_port or free_port()
        self.config = list(config)
        self.advanced = advanced
        self.plugins = list(plugins)
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="taskq-rabbit-"))
        (self.base_dir / "owner.pid").write_text(str(os.getpid()))  # see sweep_leftovers
        #: Its ``HOME``, hence its Erlang cookie: a cluster's nodes share one.
        self.home = home or self.base_dir / "home"
        #: A private epmd's port (``ERL_EPMD_PORT``), else the machine's (4369).
        self.epmd_port = epmd_port
        #: The ports ``rabbitmqctl`` may take for its own node, (first, last).
        self.ctl_ports = ctl_ports
        self.mnesia_base = self.base_dir / "mnesia"
        self.log_base = self.base_dir / "log"
        self.pid_file = self.base_dir / "node.pid"
        self.config_file = self.base_dir / "rabbitmq.conf"
        self.env_file = self.base_dir / "rabbitmq-env.conf"
        self.plugins_file = self.base_dir / "enabled_plugins"
        self.console_log = self.base_dir / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RabbitNode {self.node} 127.0.0.1:{self.port}>"

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @property
    def running(self) -> bool:
        """The node's OS process is alive (its app may still be stopped)."""
        return self._proc is not None and self._proc.poll() is None

    def environment(self) -> dict[str, str]:
        """The variables that make ``rabbitmq-server`` and ``rabbitmqctl`` this node's."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.home),
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.mnesia_base),
            RABBITMQ_LOG_BASE=str(self.log_base),
            RABBITMQ_PID_FILE=str(self.pid_file),
            RABBITMQ_CONFIG_FILE=str(self.config_file),
            RABBITMQ_CONF_ENV_FILE=str(self.env_file),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.plugins_file),
            RABBITMQ_ADVANCED_CONFIG_FILE=str(self.base_dir / "advanced.config"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        if self.epmd_port is not None:
            env["ERL_EPMD_PORT"] = str(self.epmd_port)
        if self.ctl_ports is not None:
            env["RABBITMQ_CTL_DIST_PORT_MIN"] = str(self.ctl_ports[0])
            env["RABBITMQ_CTL_DIST_PORT_MAX"] = str(self.ctl_ports[1])
        return env

    def _write_files(self) -> None:
        for directory in (self.home, self.mnesia_base, self.log_base):
            directory.mkdir(parents=True, exist_ok=True)
        self.env_file.write_text("# taskq fault tests: everything comes from the environment\n")
        self.plugins_file.write_text(f"[{','.join(self.plugins)}].\n")
        lines = [
            "loopback_users.guest = true",
            "log.console = false",
            "log.file.level = info",
            # Mostly small test messages; the default watermark of 40% of RAM is fine,
            # but a full disk on a CI machine must not stop a fault test.
            "disk_free_limit.absolute = 50MB",
            *self.config,
        ]
        self.config_file.write_text("\n".join(lines) + "\n")
        advanced_file = self.base_dir / "advanced.config"  # RABBITMQ_ADVANCED_CONFIG_FILE
        if self.advanced is not None:
            advanced_file.write_text(self.advanced.rstrip() + "\n")
        else:
            advanced_file.unlink(missing_ok=True)

    # -- life cycle ---------------------------------------------------------------

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Boot the node (again, after :meth:`kill` or :meth:`stop`: its data is kept)
        and return once its AMQP port accepts connections."""
        if self._closed:
            raise ServerError(f"{self} was closed")
        if self.running:
            raise ServerError(f"{self} is already running")
        self._write_files()
        with contextlib.suppress(FileNotFoundError):
            self.pid_file.unlink()
        with self.console_log.open("ab") as log:
            self._proc = subprocess.Popen(
                [self._server_script],
                env=self.environment(),
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a ^C to pytest is not a ^C to the node
            )
        try:
            # `wait` follows the pid file, then waits for the rabbit app to boot.
            self.ctl("wait", str(self.pid_file), "--timeout", str(int(timeout)), timeout=timeout)
            self._wait_port(timeout=15)
        except BaseException:
            self._reap(signal.SIGKILL)
            raise

    def _wait_port(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if time.monotonic() > deadline:
                raise ServerError(f"{self}: AMQP port not open after boot\n{self.log_tail()}")
            time.sleep(0.1)

    def stop_app(self) -> None:
        """Stop the RabbitMQ application, the Erlang node stays up: clients lose their
        connections and the port closes, as in a broker restart."""
        self.ctl("stop_app")

    def start_app(self, timeout: float = START_TIMEOUT) -> None:
        self.ctl("start_app", timeout=timeout)
        self.ctl("await_startup", "--timeout", str(int(timeout)), timeout=timeout)
        self._wait_port(timeout=15)

    def kill(self) -> None:
        """kill -9 of the node's beam process: no goodbye to clients, no flush."""
        pid = self.beam_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap(signal.SIGKILL)

    def stop(self, timeout: float = 60.0) -> None:
        """Stop the node cleanly (its data is kept for a later :meth:`start`)."""
        if not self.running:
            self._proc = None
            return
        try:
            self.ctl("stop", str(self.pid_file), timeout=timeout)
        except (ServerError, subprocess.TimeoutExpired):
            self.kill()
            return
        self._reap(signal.SIGKILL, wait=15)

    def close(self) -> None:
        """Stop the node and delete every file it wrote. Idempotent; never raises for a
        node that is already gone."""
        if self._closed:
            return
        self._closed = True
        try:
            # kill -9, not a clean stop: its files go next, and `rabbitmqctl stop` took
            # 2-7 s a node (a second VM to boot, then the node's own shutdown).
            self.kill()
        finally:
            if self._own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _reap(self, sig: signal.Signals, wait: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            proc.wait(10)
        # The node's helpers (erl_child_setup, inet_gethost) share its session.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)

    # -- control ------------------------------------------------------------------

    def beam_pid(self) -> int | None:
        """The OS pid of the node's Erlang VM, from its pid file."""
        try:
            return int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None

    def ctl(self, *args: str, timeout: float = 60.0) -> str:
        """``rabbitmqctl -n <this node> *args``; returns stdout, raises
        :class:`ServerError` (with the command's output) on a non-zero exit."""
        done = subprocess.run(
            [self._ctl_script, "-n", self.node, "-q", *args],
            env=self.environment(),
            cwd=self.base_dir,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise ServerError(
                f"rabbitmqctl -n {self.node} {' '.join(args)} exited {done.returncode}:\n"
                f"{done.stdout.decode(errors='replace')}{done.stderr.decode(errors='replace')}"
                f"\n{self.log_tail()}"
            )
        return done.stdout.decode(errors="replace")

    def log_tail(self, lines: int = 30) -> str:
        texts = []
        for path in [self.console_log, *sorted(self.log_base.glob("*.log"))]:
            with contextlib.suppress(OSError):
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                texts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(texts)


class RedisServer(Managed):
    """A redis-server of the test's own: ``--save "" --appendonly no`` (nothing on disk,
    so a killed one comes back empty) on a free port of 127.0.0.1; ``args`` are extra
    command-line options, e.g. ``["--maxmemory", "10mb"]``."""

    def __init__(self, *, args: Sequence[str] = (), port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServerError("redis-server is not installed")
        self._binary = binary
        self.port = port or free_port()
        self.args = list(args)
        self.dir = Path(tempfile.mkdtemp(prefix="taskq-redis-"))
        (self.dir / "owner.pid").write_text(str(os.getpid()))  # see sweep_leftovers
        (self.dir / "port").write_text(str(self.port))
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<RedisServer 127.0.0.1:{self.port}>"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15.0) -> None:
        if self._closed:
            raise ServerError(f"{self} was closed")
        if self.running:
            raise ServerError(f"{self} is already running")
        command = self.command()
        with (self.dir / "redis.log").open("ab") as log:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not self.ready():
            if self._proc.poll() is not None or time.monotonic() > deadline:
                log_text = (self.dir / "redis.log").read_text(errors="replace")
                self.kill()
                raise ServerError(f"{self} did not start:\n{log_text[-2000:]}")
            time.sleep(0.05)

    def ready(self) -> bool:
        """It accepts connections (one in a network namespace is asked otherwise)."""
        return port_open(self.port)

    def command(self) -> list[str]:
        """The server's command line (a sentinel's differs: ``tests/faults/sentinel.py``)."""
        return [
            self._binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.dir),
            "--daemonize", "no",
            "--pidfile", str(self.dir / "server.pid"),
            *self.args,
        ]  # fmt: skip

    def stop(self, *, save: bool = True, timeout: float = 15.0) -> None:
        """``SHUTDOWN SAVE`` (or ``NOSAVE``): the server goes away (clients lose their
        connections, the port closes); saved, its data is back after :meth:`start`,
        which loads ``dump.rdb`` from its directory although ``--save ""`` never writes
        one by itself."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._proc = None
            return
        word = b"SAVE" if save else b"NOSAVE"
        command = b"*2\r\n$8\r\nSHUTDOWN\r\n$%d\r\n%s\r\n" % (len(word), word)
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
            sock.sendall(command)
            with contextlib.suppress(OSError):
                sock.recv(1024)  # the server closes without an answer when it stops
        proc.wait(timeout)
        self._proc = None

    def kill(self) -> None:
        """kill -9: its clients see their connections reset; what it held since the
        last ``stop(save=True)`` is gone."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def rabbit_node(config: Sequence[str] = (), advanced: str | None = None) -> Iterator[RabbitNode]:
    """A started :class:`RabbitNode`, closed (stopped, files removed) on exit."""
    with RabbitNode(config=config, advanced=advanced) as node:
        yield node
