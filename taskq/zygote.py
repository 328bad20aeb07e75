"""Worker processes forked from one that imported everything: the memory of a pool.

``taskq worker --processes N`` on Linux: the supervisor (:mod:`taskq.supervisor`,
standard library only) starts one *zygote*, the ``taskq worker`` command itself with
:data:`ZYGOTE_ENV` set. The zygote imports the app and the worker's code (drivers,
uvloop, pydantic), freezes the garbage collector's view of what it imported
(``gc.freeze()``: a collection in a child would otherwise write to every object
header and copy every page), and then only forks: no event loop, no connection, no
thread is ever made in it, so each child starts from a clean process and makes its
own. The children share the zygote's pages until they write to them; a fresh
interpreter per child held a full copy of everything (issue 14: ~160 MiB RSS /
120 MiB PSS for two).

The supervisor talks to the zygote over two pipes, one line per message:

- supervisor -> zygote: ``start <slot>``, ``signal <pid> <signum>``;
- zygote -> supervisor: ``started <slot> <pid>``, ``exited <pid> <code>`` (the code
  as :attr:`subprocess.Popen.returncode` has it: ``-N`` for signal N).

The zygote reaps its children and reports their exits; it signals only children it
has not reaped, so a pid is never signalled after it could have been reused. Its
children run in process groups of their own and get SIGTERM when the zygote dies
(``PR_SET_PDEATHSIG``); the zygote itself gets SIGTERM when the supervisor dies and
exits when the supervisor closes its end. Where ``os.fork`` is not safe to use this
way (macOS, Windows) or with ``--start-method spawn``, the supervisor starts fresh
interpreters as before (:class:`~taskq.supervisor.PopenLauncher`).
"""

from __future__ import annotations

import contextlib
import gc
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

from taskq.supervisor_log import LineLogger

#: Set in the zygote's environment: the file descriptors of its ends of the two pipes,
#: ``<read>,<write>``.
ZYGOTE_ENV = "TASKQ_WORKER_ZYGOTE"
#: Seconds the zygote waits for a message before it looks for exited children again.
REAP_INTERVAL = 0.05

log = LineLogger("taskq.supervisor")


def fork_available() -> bool:
    """Whether workers are forked from a zygote here: Linux only. macOS's system
    frameworks are not fork-safe (Python itself spawns there by default)."""
    return sys.platform == "linux" and hasattr(os, "fork")


class Channel:
    """One end of the supervisor's and the zygote's two pipes: lines out, bytes in.
    Pipes rather than a socket pair: the supervisor imports no ``socket`` for them."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd = read_fd
        self.write_fd = write_fd

    @classmethod
    def pair(cls) -> tuple[Channel, Channel]:
        """The supervisor's end and the zygote's."""
        to_zygote_r, to_zygote_w = os.pipe()
        from_zygote_r, from_zygote_w = os.pipe()
        return cls(from_zygote_r, to_zygote_w), cls(to_zygote_r, from_zygote_w)

    @classmethod
    def from_env(cls, fds: str) -> Channel:
        read_fd, write_fd = (int(fd) for fd in fds.split(","))
        return cls(read_fd, write_fd)

    def to_env(self) -> str:
        return f"{self.read_fd},{self.write_fd}"

    def send(self, line: str) -> None:
        """Write ``line``: one ``write`` (a line is far below PIPE_BUF, so it is atomic)."""
        os.write(self.write_fd, line.encode() + b"\n")

    def receive(self) -> bytes:
        """What is there to read (``b""`` at the end; BlockingIOError when nothing
        is, on a non-blocking end)."""
        return os.read(self.read_fd, 65536)

    def close(self) -> None:
        for fd in (self.read_fd, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


# -- the zygote's side ---------------------------------------------------------------


def serve(fds: str, run_child: Callable[[int], int]) -> int:
    """The zygote's loop, once everything is imported: fork a child running
    ``run_child(slot)`` on each ``start``, report exits, until the supervisor closes its
    end. Returns the zygote's exit code."""
    import threading

    from taskq.logs import get_logger  # the zygote is `taskq worker`: its log is set up

    if threading.active_count() > 1:  # a fork copies only the thread that forks
        names = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread())
        get_logger("taskq.zygote").warning(
            "the app started threads when it was imported; forked workers will not have "
            "them: use --start-method spawn",
            threads=names,
        )
    gc.collect()
    gc.freeze()  # what is imported stays on pages the children share
    sock = Channel.from_env(fds)
    children: set[int] = set()
    try:
        return _serve(sock, children, run_child)
    except BrokenPipeError:
        return 0  # the supervisor is gone: SIGTERM is on its way
    finally:
        sock.close()


def _serve(sock: Channel, children: set[int], run_child: Callable[[int], int]) -> int:
    pending = b""
    while True:
        readable, _, _ = select.select([sock.read_fd], [], [], REAP_INTERVAL)
        _report_exits(sock, children)
        if not readable:
            continue
        data = sock.receive()
        if not data:
            return 0  # the supervisor is done (or gone)
        pending += data
        *lines, pending = pending.split(b"\n")
        for line in lines:
            _handle(sock, line.decode().split(), children, run_child)


def _handle(
    sock: Channel, words: list[str], children: set[int], run_child: Callable[[int], int]
) -> None:
    if words[0] == "start":
        slot = int(words[1])
        pid = os.fork()
        if pid == 0:
            _child(sock, slot, run_child)  # never returns
        children.add(pid)
        sock.send(f"started {slot} {pid}")
    elif words[0] == "signal":
        pid, signum = int(words[1]), int(words[2])
        if pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)


def _report_exits(sock: Channel, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        sock.send(f"exited {pid} {os.waitstatus_to_exitcode(status)}")


def _child(sock: Channel, slot: int, run_child: Callable[[int], int]) -> None:
    """In a fresh fork: become worker ``slot``; exits, never returns."""
    code = 1
    try:
        zygote = os.getppid()
        sock.close()
        os.setpgid(0, 0)  # as the supervisor's children always were: no terminal signals
        die_with_parent()
        if os.getppid() != zygote:  # the zygote died before the line above
            os._exit(1)
        from taskq.supervisor_launch import SLOT_ENV

        os.environ.pop(ZYGOTE_ENV, None)
        os.environ[SLOT_ENV] = str(slot)
        code = run_child(slot)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def die_with_parent(signum: int = signal.SIGTERM) -> None:
    """Ask Linux to send ``signum`` to this process when its parent dies; elsewhere a
    no-op. A child in its own process group gets no terminal signal, and nobody would
    stop it otherwise."""
    if sys.platform == "linux":
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, signum)


# -- the supervisor's side -----------------------------------------------------------


class ForkedChild:
    """A worker forked by the zygote, as the supervisor sees it: the part of
    :class:`subprocess.Popen` it uses."""

    def __init__(self, launcher: ZygoteLauncher, slot: int) -> None:
        self.launcher = launcher
        self.slot = slot
        #: Known once the zygote answered ``started``.
        self.pid: int | None = None
        self.returncode: int | None = None
        #: Signals sent before the pid was known, delivered once it is.
        self.pending: list[int] = []

    def poll(self) -> int | None:
        self.launcher.pump()
        return self.returncode

    def send_signal(self, signum: int) -> None:
        self.launcher.signal(self, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def wait(self) -> int:
        while self.poll() is None:
            time.sleep(REAP_INTERVAL)
        assert self.returncode is not None
        return self.returncode


class ZygoteLauncher:
    """Starts workers by asking a zygote (started on first need, and again if it died)
    to fork them. ``command`` is the ``taskq worker`` command line the zygote runs."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.command = list(command)
        self.env = dict(env)
        self._zygote: subprocess.Popen[bytes] | None = None
        self._sock: Channel | None = None
        self._buffer = b""
        self._children: list[ForkedChild] = []
        #: Called with each child once its pid is known.
        self.on_started: Callable[[ForkedChild], None] = lambda child: None

    def start(self, slot: int) -> ForkedChild:
        sock = self._ensure_zygote()
        child = ForkedChild(self, slot)
        self._children.append(child)
        try:
            sock.send(f"start {slot}")
        except OSError:
            self._zygote_gone()
        return child

    def signal(self, child: ForkedChild, signum: int) -> None:
        """Signal ``child`` through the zygote; a child not forked yet gets it as soon
        as it is."""
        if child.returncode is not None:
            return
        if child.pid is None:
            child.pending.append(signum)
            return
        if self._sock is None:
            return
        try:
            self._sock.send(f"signal {child.pid} {signum}")
        except OSError:
            self._zygote_gone()

    def pump(self) -> None:
        """Read what the zygote said since the last look; notice if it died."""
        sock = self._sock
        if sock is None:
            return
        while True:
            try:
                data = sock.receive()
            except BlockingIOError:
                break
            except OSError:
                data = b""
            if not data:
                self._messages()  # the exits it reported before it went
                self._zygote_gone()
                return
            self._buffer += data
        self._messages()

    def _messages(self) -> None:
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self._message(line.decode().split())

    def close(self) -> None:
        """Close the zygote's pipes: it exits; wait for it (its children are gone)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        zygote, self._zygote = self._zygote, None
        if zygote is not None:
            try:
                zygote.wait(10)
            except subprocess.TimeoutExpired:
                zygote.kill()
                zygote.wait()

    def _message(self, words: list[str]) -> None:
        if words[0] == "started":
            slot, pid = int(words[1]), int(words[2])
            for child in self._children:
                if child.slot == slot and child.pid is None and child.returncode is None:
                    child.pid = pid
                    self.on_started(child)
                    pending, child.pending = child.pending, []
                    for signum in pending:
                        self.signal(child, signum)
                    return
        elif words[0] == "exited":
            pid, code = int(words[1]), int(words[2])
            for child in self._children:
                if child.pid == pid:
                    child.returncode = code
                    self._children.remove(child)
                    return

    def _ensure_zygote(self) -> Channel:
        if self._sock is not None and self._zygote is not None:
            return self._sock
        ours, theirs = Channel.pair()
        os.set_blocking(ours.read_fd, False)
        try:
            env = {**self.env, ZYGOTE_ENV: theirs.to_env()}
            self._zygote = subprocess.Popen(
                self.command,
                env=env,
                pass_fds=[theirs.read_fd, theirs.write_fd],
                process_group=0,
                preexec_fn=die_with_parent,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        log.debug("zygote started", pid=self._zygote.pid)
        self._sock = ours
        return ours

    def _zygote_gone(self) -> None:
        """The zygote exited (or its pipes broke): every child it had is gone too
        (SIGTERM on its death); those it never forked end with its exit code."""
        zygote, self._zygote = self._zygote, None
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()
        code = -signal.SIGTERM
        if zygote is not None:
            try:
                code = zygote.wait(10)
            except subprocess.TimeoutExpired:
                zygote.kill()
                code = zygote.wait()
        self._buffer = b""
        for child in self._children:
            child.returncode = code if child.pid is None else -signal.SIGTERM
        self._children = []
        if code != 0:
            log.debug("zygote exited", exit_code=code)
