"""The worker processes of a run: ``taskq worker`` as a user starts it, and their RSS.

``[python, -m, taskq, worker, taskq.bench.tasks:app, --processes P, --concurrency C]``
with only the run's ``TASKQ_*`` variables, so the workers are what a deployment runs
(uvloop, the supervisor when P > 1), not something the bench set up in-process. Their
log goes to a temporary file, shown when one dies.

Peak RSS is the kernel's high-water mark (``VmHWM`` in ``/proc/<pid>/status``) of each
process running tasks: the worker itself, or the supervisor's children; Linux only.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
from pathlib import Path

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


class Workers:
    """``taskq worker`` running the bench app; :meth:`stop` always, once started.

    >>> workers = Workers(config)
    >>> await workers.start()
    >>> workers.check()            # raises if the worker died
    >>> workers.peak_rss_mib()
    >>> await workers.stop()
    """

    def __init__(self, config: BenchConfig) -> None:
        self.config = config
        self._process: asyncio.subprocess.Process | None = None
        self._log = tempfile.TemporaryFile()

    @property
    def command(self) -> list[str]:
        c = self.config
        return [
            sys.executable, "-m", "taskq", "worker", APP_PATH,
            "--processes", str(c.processes), "--concurrency", str(c.concurrency),
        ]  # fmt: skip

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *self.command,
            env=worker_environment(self.config),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=self._log,
        )

    def _tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode(errors="replace").strip().splitlines()
        return " | ".join(line.strip() for line in lines[-LOG_TAIL:])

    def check(self) -> None:
        """Raise :class:`TaskqError` with the end of its log if the worker exited."""
        process = self._process
        if process is not None and process.returncode is not None:
            raise TaskqError(
                f"bench: the worker exited with code {process.returncode}: {self._tail()}"
            )

    def task_pids(self) -> list[int]:
        """The processes that run tasks: the worker, or the supervisor's children."""
        if self._process is None:
            return []
        if self.config.processes == 1:
            return [self._process.pid]
        return children(self._process.pid)

    def cpu_seconds(self) -> float | None:
        """CPU seconds used so far by :meth:`task_pids`, together."""
        used = [cpu for pid in self.task_pids() if (cpu := cpu_seconds(pid)) is not None]
        return sum(used) if used else None

    def peak_rss_mib(self) -> float | None:
        """The largest peak RSS among :meth:`task_pids`, in MiB."""
        peaks = [rss for pid in self.task_pids() if (rss := peak_rss_mib(pid)) is not None]
        return max(peaks) if peaks else None

    async def stop(self) -> None:
        """SIGTERM (the supervisor passes it on), wait; SIGKILL after STOP_TIMEOUT."""
        process, self._process = self._process, None
        try:
            if process is None or process.returncode is not None:
                return
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        finally:
            self._log.close()
