"""Private PostgreSQL servers for tests: a cluster of the test's own (``initdb`` +
``pg_ctl``) and a PgBouncer in transaction mode, each on a free port of 127.0.0.1 with
its files under one temporary directory, run as the ``postgres`` user (both refuse to
run as root), removed on close. The machine's PostgreSQL on 5432 is never stopped.

    with PostgresCluster() as pg:          # initdb, start; pg.url: database postgres
        pg.restart(down=2.0)               # stop -m immediate (a crash), 2 s, start
    with PgBouncer(upstream_port=5432) as bouncer:
        bouncer.url("test")                # postgresql://postgres@127.0.0.1:<port>/test
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.faults.servers import Managed, ServerError, free_port, port_open

#: Debian's PostgreSQL binaries (initdb and pg_ctl are not on PATH there).
PG_BIN = Path("/usr/lib/postgresql/15/bin")
USER = "postgres"


def _as_postgres(*command: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    runner = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*runner, *command], capture_output=True, text=True, timeout=timeout, check=False
    )


def _private_dir(prefix: str) -> Path:
    sweep_leftovers()
    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / "owner.pid").write_text(str(os.getpid()))  # see sweep_leftovers
    if os.geteuid() == 0:
        entry = pwd.getpwnam(USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_leftovers() -> None:
    """Stop the private clusters and PgBouncers that a killed test run left behind
    (their directory names the pid of the process that made it, now dead) and delete
    their files. A process is killed only if its command line names that directory."""
    for directory in Path(tempfile.gettempdir()).glob("taskq-pg*-*"):
        try:
            owner = int((directory / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        for pid_file in (directory / "data" / "postmaster.pid", directory / "pgbouncer.pid"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int(pid_file.read_text().split()[0])
                if str(directory).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                    # SIGQUIT: PostgreSQL's immediate shutdown, its backends with it.
                    os.kill(
                        pid, signal.SIGQUIT if pid_file.name == "postmaster.pid" else signal.SIGTERM
                    )
        shutil.rmtree(directory, ignore_errors=True)


def available() -> str | None:
    """Why a private cluster cannot be made here, or ``None`` when it can."""
    if not (PG_BIN / "initdb").exists():
        return f"no {PG_BIN}/initdb (apt-get install postgresql-15)"
    try:
        pwd.getpwnam(USER)
    except KeyError:
        return f"no {USER} user to run PostgreSQL as"
    return None


class PostgresCluster(Managed):
    """A PostgreSQL 15 cluster of the test's own: trust auth on 127.0.0.1 only, no unix
    socket outside its directory, fsync off (its data need not survive the machine)."""

    def __init__(
        self, settings: Sequence[str] = (), *, standby_of: PostgresCluster | None = None
    ) -> None:
        #: Extra ``name=value`` server settings (``ssl=on``...).
        self.settings = list(settings)
        #: A streaming replica of this cluster (``pg_basebackup -R``) instead of initdb.
        self.standby_of = standby_of
        self.port = free_port()
        self.dir = _private_dir("taskq-pg-")
        self.data = self.dir / "data"
        self.log = self.dir / "server.log"
        self._closed = False

    def __repr__(self) -> str:
        return f"<PostgresCluster 127.0.0.1:{self.port}>"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60.0) -> None:
        if self._closed:
            raise ServerError(f"{self} was closed")
        if not self.data.exists() and self.standby_of is not None:
            done = _as_postgres(
                str(PG_BIN / "pg_basebackup"), "-h", "127.0.0.1",
                "-p", str(self.standby_of.port), "-U", USER, "-D", str(self.data),
                "-R", "-X", "stream", "-c", "fast",
            )  # fmt: skip
            if done.returncode:
                raise ServerError(f"pg_basebackup failed: {done.stderr[-2000:]}")
        elif not self.data.exists():
            done = _as_postgres(
                str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER
            )
            if done.returncode:
                raise ServerError(f"initdb failed: {done.stderr[-2000:]}")
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir}"
            " -c fsync=off -c max_connections=60"
            + "".join(f" -c {setting}" for setting in self.settings)
        )
        done = _as_postgres(
            str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
            "-o", options, "-w", "-t", str(int(timeout)), "start",
        )  # fmt: skip
        if done.returncode or not port_open(self.port):
            raise ServerError(f"{self} did not start: {done.stderr}\n{self.log_tail()}")

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m fast`` (clients disconnected, a clean shutdown) or ``-m
        immediate`` (no shutdown checkpoint: recovery at the next start, as after a
        crash)."""
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """A standby becomes a primary (``pg_ctl promote``, waiting for it)."""
        done = _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-w", "promote")
        if done.returncode:
            raise ServerError(f"{self} was not promoted: {done.stderr}\n{self.log_tail()}")

    def restart(self, down: float = 0.0, mode: str = "immediate") -> None:
        self.stop(mode)
        time.sleep(down)
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def own_file(self, source: str | Path, name: str) -> Path:
        """A copy of ``source`` in the cluster's directory, the server's alone (mode
        0600, as PostgreSQL wants its TLS key)."""
        target = self.dir / name
        shutil.copyfile(source, target)
        target.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(target, USER, USER)
        return target

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if (self.data / "postmaster.pid").exists():
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


class PgBouncer(Managed):
    """PgBouncer in transaction mode in front of ``127.0.0.1:upstream_port``, every
    database, trust auth, ``pool_size`` server connections per database: far fewer
    than its clients, so consecutive transactions of one client land on different
    server connections (what breaks session state)."""

    def __init__(self, upstream_port: int = 5432, *, pool_size: int = 2) -> None:
        binary = shutil.which("pgbouncer")
        if binary is None:
            raise ServerError("pgbouncer is not installed (apt-get install pgbouncer)")
        self._binary = binary
        self.port = free_port()
        self.dir = _private_dir("taskq-pgbouncer-")
        self.upstream_port = upstream_port
        self.pool_size = pool_size
        self._proc: subprocess.Popen[bytes] | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"<PgBouncer 127.0.0.1:{self.port} -> {self.upstream_port}>"

    def url(self, database: str = "test") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 15.0) -> None:
        users = self.dir / "users.txt"
        users.write_text(f'"{USER}" ""\n')
        config = self.dir / "pgbouncer.ini"
        config.write_text(
            "[databases]\n"
            f"* = host=127.0.0.1 port={self.upstream_port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {users}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            f"logfile = {self.dir / 'pgbouncer.log'}\n"
            f"pidfile = {self.dir / 'pgbouncer.pid'}\n"
        )
        for path in (users, config):
            shutil.chown(path, USER)
        runner = ["runuser", "-u", USER, "--"] if os.geteuid() == 0 else []
        self._proc = subprocess.Popen(
            [*runner, self._binary, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"{self} did not start:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            text = (self.dir / "pgbouncer.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
                proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def cluster_pids(cluster: PostgresCluster) -> list[int]:
    """The postmaster of ``cluster`` and every process it started (its backends)."""
    head = (cluster.data / "postmaster.pid").read_text().splitlines()[0]
    postmaster = int(head)
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == postmaster:
                children.append(int(entry.name))
    return [postmaster, *children]
