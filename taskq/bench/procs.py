"""The processes of a run (``taskq worker`` as a user starts it, the ceiling's
consumers), their CPU and memory.

``[python, -m, taskq, worker, taskq.bench.tasks:app, --processes P, --concurrency C]``
with only the run's ``TASKQ_*`` variables, so the workers are what a deployment runs
(uvloop, the supervisor when P > 1), not something the bench set up in-process. Their
log goes to a temporary file, shown when one dies.

Peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``) of each
process running tasks: the worker itself, or the supervisor's children. The tree's PSS
(``Pss`` in ``/proc/<pid>/smaps_rollup``) sums every process the bench started and
their descendants, the supervisor included: pages shared between them (a fork's
copy-on-write pages, the same libraries) are counted once. Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import IO

import taskq
from taskq.bench.config import WORKER_LOG_LEVEL, BenchConfig
from taskq.errors import TaskqError

#: What the workers import.
APP_PATH = "taskq.bench.tasks:app"
#: Seconds the workers get to stop after SIGTERM before they are killed.
STOP_TIMEOUT = 30.0
#: Lines of a dead worker's log shown in the error: the exception, and with the
#: supervisor the line that reports the child's exit.
LOG_TAIL = 3
#: Where this taskq lives: the workers must import the same code.
_SOURCE_ROOT = str(Path(taskq.__file__).resolve().parent.parent)


def worker_environment(config: BenchConfig) -> dict[str, str]:
    """This environment less any ``TASKQ_*`` setting, plus the run's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update(
        TASKQ_BROKER_URL=config.broker_url,
        TASKQ_STORE_URL=config.store_url,
        TASKQ_EXCHANGE=config.exchange,
        TASKQ_LOG_LEVEL=WORKER_LOG_LEVEL,
    )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
    return env


def peak_rss_mib(pid: int) -> float | None:
    """``VmHWM`` of ``pid`` in MiB; ``None`` where ``/proc`` cannot tell."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)  # in kB
    return None


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds ``pid`` has used; ``None`` where ``/proc`` cannot tell."""
    try:
        # The command name may hold spaces and parentheses: fields count from the last ')'.
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    """The child processes of ``pid`` (every thread's ``children`` list)."""
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in path.read_text().split())
    return found


def pss_mib(pid: int) -> float | None:
    """Proportional set size of ``pid`` in MiB (``Pss`` in ``/proc/<pid>/smaps_rollup``:
    each shared page counted once across the processes sharing it); ``None`` where
    ``/proc`` cannot tell."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    for line in rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024  # in kB
    return None


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children(current))
    return found


class ProcessGroup:
    """Processes the bench started, each logging to a temporary file; :meth:`stop`
    always, once started. A subclass says what to run (:meth:`start`) and which
    processes run tasks (:meth:`task_pids`)."""

    #: What :meth:`check`'s error calls the processes.
    what = "a process"

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._processes: list[tuple[asyncio.subprocess.Process, IO[bytes]]] = []

    async def _spawn(
        self, command: list[str], *, piped: bool = False
    ) -> asyncio.subprocess.Process:
        """Start ``command``; ``piped``: with its stdin and stdout as pipes."""
        log = tempfile.TemporaryFile()
        io = asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                env=worker_environment(self.config),
                stdin=io,
                stdout=io,
                stderr=log,
            )
        except BaseException:
            log.close()
            raise
        self._processes.append((process, log))
        return process

    @property
    def pids(self) -> list[int]:
        """The processes this group started (not their children)."""
        return [process.pid for process, _ in self._processes]

    def task_pids(self) -> list[int]:
        """The processes that run tasks."""
        return self.pids

    def check(self) -> None:
        """Raise :class:`TaskqError` with the end of its log if a process exited."""
        for process, log in self._processes:
            if process.returncode is not None:
                raise TaskqError(
                    f"bench: {self.what} exited with code {process.returncode}: {_tail(log)}"
                )

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by :meth:`task_pids`, together."""
        used = [cpu for pid in self.task_pids() if (cpu := cpu_seconds(pid)) is not None]
        return sum(used) if used else None

    def peak_rss_mib(self) -> float | None:
        """The largest peak RSS among :meth:`task_pids`, in MiB."""
        peaks = [rss for pid in self.task_pids() if (rss := peak_rss_mib(pid)) is not None]
        return max(peaks) if peaks else None

    def tree_pss_mib(self) -> float | None:
        """The PSS of every process of the group and their descendants, summed, in MiB."""
        sizes = [pss_mib(pid) for started in self.pids for pid in tree(started)]
        known = [size for size in sizes if size is not None]
        return round(sum(known), 1) if known else None

    async def stop(self) -> None:
        """SIGTERM (a supervisor passes it on), wait; SIGKILL after STOP_TIMEOUT."""
        processes, self._processes = self._processes, []
        try:
            for process, _ in processes:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.send_signal(signal.SIGTERM)
            for process, _ in processes:
                try:
                    await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
                    await process.wait()
        finally:
            for _, log in processes:
                log.close()


def _tail(log: IO[bytes]) -> str:
    log.seek(0)
    lines = log.read().decode(errors="replace").strip().splitlines()
    return " | ".join(line.strip() for line in lines[-LOG_TAIL:])


class Workers(ProcessGroup):
    """``taskq worker`` running the bench app.

    >>> workers = Workers(config)
    >>> await workers.start()
    >>> workers.check()            # raises if the worker died
    >>> workers.peak_rss_mib()
    >>> await workers.stop()
    """

    what = "the worker"

    @property
    def command(self) -> list[str]:
        c = self.config
        return [
            sys.executable, "-m", "taskq", "worker", APP_PATH,
            "--processes", str(c.processes), "--concurrency", str(c.concurrency),
        ]  # fmt: skip

    async def start(self) -> None:
        await self._spawn(self.command)

    def task_pids(self) -> list[int]:
        """The worker, or the supervisor's children; forked ones are the children of
        the supervisor's one child, the zygote (``taskq.zygote``)."""
        if self.config.processes == 1:
            return self.pids
        found = []
        for child in (child for pid in self.pids for child in children(pid)):
            forked = children(child)
            found.extend(forked or [child])
        return found
