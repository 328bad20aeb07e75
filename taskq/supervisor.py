"""The supervisor of ``taskq worker --processes N``: N worker processes, kept running.

Each child runs the very same ``taskq worker`` command line, with ``TASKQ_WORKER_SLOT``
in its environment telling it that it is child number ``slot`` and must run one worker
itself rather than supervise (``cli/worker.py``). On Linux the children are forked
from a zygote that imported the app once (:mod:`taskq.zygote`, :class:`ZygoteLauncher`)
so that they share its memory; elsewhere, or with ``--start-method spawn``, each is a
fresh interpreter (:class:`PopenLauncher`). A child that re-executes itself (a sync
task overran its time limit) keeps its pid and its slot: the supervisor sees nothing.
The supervisor imports only the standard library (and prometheus_client with
``--metrics-port``): ``taskq worker --processes N`` re-executes itself as
``python -m taskq.supervise`` (:mod:`taskq.supervise`) to shed what the command
imported, so the pool's memory is its children's.

- A child that exits 0 while no stop was asked for was recycled
  (``--max-tasks-per-child``): started again at once.
- A child that dies otherwise is logged with its exit code or signal, then started
  again after a backoff that doubles from 0.5 s to 30 s, and starts from 0.5 s again
  once a child of that slot has run for a minute. The first child of a slot that
  exits with a configuration, import, connection or usage error at startup (exit
  codes 1, 2, 3, 64) stops everything: the command itself is wrong, and restarting
  it would only repeat the error.
- A child whose health file (``--health-file``) went stale is wedged: killed, and
  restarted as above (a child has ``STARTUP_GRACE`` to import the app and touch it a
  first time). The supervisor touches the health file itself.
- SIGTERM / SIGINT is forwarded to every child, which finishes its running tasks
  within its grace period; a second SIGINT kills them at once (SIGKILL). The
  supervisor exits 0 once every child stopped cleanly.

Children run in their own process group, so a Ctrl-C at a terminal reaches them once,
through the supervisor, and never twice; on Linux they also get SIGTERM should the
supervisor itself die (forked ones: should the zygote die, which gets SIGTERM when the
supervisor dies). Their stdout and stderr are the supervisor's.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence

from taskq import health_files as health
from taskq.supervisor_launch import SLOT_ENV, ForkLauncher, PopenLauncher
from taskq.supervisor_log import LineLogger

TYPE_CHECKING = False  # typing: not imported by the supervisor for this
if TYPE_CHECKING:
    from types import FrameType

    from taskq.supervisor_launch import Child, Launcher

__all__ = ["SLOT_ENV", "Supervisor", "child_health_file"]

log = LineLogger("taskq.supervisor")

#: Exit codes of a child's first start that mean the command is wrong: RET_ERROR,
#: RET_IMPORT, RET_CONNECT and RET_USAGE of ``taskq.cli.common``.
FATAL_AT_START = frozenset({1, 2, 3, 64})

#: How a child may end when told to stop: 0 from a worker; the signal itself, or
#: RET_INTERRUPTED, from one told before its worker was up (nothing had started yet).
STOPPED_CLEANLY = frozenset({0, -signal.SIGTERM, -signal.SIGINT, 130})

#: What the supervisor exits with after a second SIGINT killed the children.
RET_KILLED = 130

BACKOFF_START = 0.5
BACKOFF_MAX = 30.0
#: A child that ran this long resets its slot's backoff.
STABLE_AFTER = 60.0
#: Seconds a child may take to import the app and start its event loop (its first
#: touch of its health file) before it counts as wedged.
STARTUP_GRACE = 60.0
#: How often the supervisor looks at its children.
POLL_INTERVAL = 0.1


class Slot:
    """One of the N places a child process fills, with what its restarts depend on."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Child | None = None
        self.started_at = 0.0  # time.time() of the current child's start
        self.starts = 0
        self.backoff = BACKOFF_START
        self.restart_at: float | None = 0.0  # monotonic; None: not to restart


class Supervisor:
    """Runs ``command`` (argv of a ``taskq worker``) in ``processes`` children until
    SIGTERM / SIGINT; :meth:`run` returns the exit code.

    >>> Supervisor([sys.executable, "-m", "taskq", "worker", "app:app"], processes=4).run()
    """

    def __init__(
        self,
        command: Sequence[str],
        *,
        processes: int,
        health_file: str | None = None,
        health_interval: float = health.DEFAULT_INTERVAL,
        env: Mapping[str, str] | None = None,
        on_exit: Callable[[int], None] | None = None,
        fork: bool = False,
    ) -> None:
        self.command = list(command)
        #: Called with the pid of each child that ended (its live metrics are dropped).
        self.on_exit = on_exit
        self.slots = [Slot(i) for i in range(processes)]
        self.health_file = health_file
        self.health_interval = health_interval
        self.env = dict(os.environ if env is None else env)
        self.launcher: Launcher = (ForkLauncher if fork else PopenLauncher)(self.command, self.env)
        self._stop_signal: int | None = None
        self._killed = False
        self._stop_sent = False
        self._kill_sent = False
        self._exit_code = 0
        self._last_beat = 0.0

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        log.info("supervisor started", pid=os.getpid(), processes=len(self.slots))
        try:
            while not self._done():
                self._forward_signals()
                self._reap()
                if self._stop_signal is None:
                    self._start_due()
                    self._kill_wedged()
                self._beat()
                time.sleep(POLL_INTERVAL)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            try:
                self._kill_all()  # only reached with children alive if run() itself failed
            finally:
                self.launcher.close()
        log.info("supervisor stopped", pid=os.getpid(), exit_code=self._exit_code)
        return self._exit_code

    # -- signals --------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only noted here; the loop passes it on (``_forward_signals``). Passed on from
        # here, it could miss a child the loop was starting at that very moment.
        if self._stop_signal is None:
            self._stop_signal = signum
        elif signum == signal.SIGINT:
            self._killed = True

    def _forward_signals(self) -> None:
        if self._stop_signal is not None and not self._stop_sent:
            self._stop_sent = True
            log.info("stopping the worker processes", signal=signal.Signals(self._stop_signal).name)
            self._signal_children(self._stop_signal)
        if self._killed and not self._kill_sent:
            self._kill_sent = True
            self._exit_code = RET_KILLED
            log.warning("second SIGINT: killing the worker processes")
            self._signal_children(signal.SIGKILL)

    def _signal_children(self, signum: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                try:
                    slot.process.send_signal(signum)
                except ProcessLookupError:
                    pass

    def _kill_all(self) -> None:
        self._signal_children(signal.SIGKILL)
        for slot in self.slots:
            if slot.process is not None:
                slot.process.wait()

    # -- children -------------------------------------------------------------------

    def _done(self) -> bool:
        if self._stop_signal is None:
            return False
        return all(s.process is None for s in self.slots)

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot in self.slots:
            if slot.process is None and slot.restart_at is not None and now >= slot.restart_at:
                self._start(slot)

    def _start(self, slot: Slot) -> None:
        slot.started_at = time.time()
        slot.starts += 1
        slot.restart_at = None
        slot.process = self.launcher.start(slot.index, _log_started)

    def _reap(self) -> None:
        for slot in self.slots:
            if slot.process is None:
                continue
            code = slot.process.poll()
            if code is None:
                continue
            pid, slot.process = slot.process.pid, None
            ran = time.time() - slot.started_at
            if self.on_exit is not None and pid is not None:
                self.on_exit(pid)
            self._exited(slot, pid, code, ran)

    def _exited(self, slot: Slot, pid: int | None, code: int, ran: float) -> None:
        how = _describe(code)
        if self._stop_signal is not None:
            if code not in STOPPED_CLEANLY and not self._killed and not self._exit_code:
                self._exit_code = code if code > 0 else 1
            log.info("worker process stopped", pid=pid, slot=slot.index, **how)
            return
        if code == 0:
            log.info("worker process recycled", pid=pid, slot=slot.index, ran=round(ran, 3))
            slot.restart_at = time.monotonic()
            return
        if slot.starts == 1 and code in FATAL_AT_START and ran < STABLE_AFTER:
            log.error("worker process failed at startup; stopping", pid=pid, slot=slot.index, **how)
            self._exit_code = code
            self._stop_signal = signal.SIGTERM
            return
        if ran >= STABLE_AFTER:
            slot.backoff = BACKOFF_START
        delay, slot.backoff = slot.backoff, min(slot.backoff * 2, BACKOFF_MAX)
        slot.restart_at = time.monotonic() + delay
        log.warning(
            "worker process died; restarting",
            pid=pid,
            slot=slot.index,
            ran=round(ran, 3),
            restart_in=delay,
            **how,
        )

    # -- health ---------------------------------------------------------------------

    def _kill_wedged(self) -> None:
        if self.health_file is None:
            return
        stale_after = self.health_interval * health.STALE_INTERVALS
        for slot in self.slots:
            if slot.process is None:
                continue
            path = child_health_file(self.health_file, slot.index)
            age = health.age(path, since=slot.started_at)
            if age is None:  # still importing the app and connecting
                age = time.time() - slot.started_at
                if age <= max(stale_after, STARTUP_GRACE):
                    continue
            if age > stale_after and slot.process.poll() is None:
                log.error(
                    "worker process is wedged (its health file went stale); killing it",
                    pid=slot.process.pid,
                    slot=slot.index,
                    stale_for=round(age, 1),
                )
                slot.process.kill()

    def _beat(self) -> None:
        now = time.monotonic()
        if self.health_file is None or now - self._last_beat < self.health_interval:
            return
        self._last_beat = now
        try:
            health.touch(self.health_file)
        except OSError as exc:
            log.warning("could not touch the health file", path=self.health_file, error=str(exc))


def child_health_file(path: str, slot: int) -> str:
    """The health file of the child in ``slot`` when the supervisor's is ``path``."""
    return f"{path}.{slot}"


def _describe(code: int) -> dict[str, object]:
    """A Popen return code as log fields: ``exit_code=3`` or ``signal="SIGKILL"``."""
    if code < 0:
        try:
            return {"signal": signal.Signals(-code).name}
        except ValueError:
            return {"signal": -code}
    return {"exit_code": code}


def _log_started(pid: int, slot: int) -> None:
    log.info("worker process started", pid=pid, slot=slot)
