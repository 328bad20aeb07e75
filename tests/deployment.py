"""A deployment of a test's own, as separate processes see it: the TASKQ_* variables
that configure them, running ``python`` in a subprocess, and deleting what it left."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from taskq import TaskQueue
from tests.conftest import remove_app

ROOT = Path(__file__).resolve().parent.parent
SUBPROCESS_TIMEOUT = 30.0


def environment(**taskq: str) -> dict[str, str]:
    """This process's environment less its TASKQ_* settings, plus ``taskq``'s
    (``broker_url="amqp://..."`` becomes ``TASKQ_BROKER_URL``), with this checkout's
    taskq importable whether it is installed or not."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update({f"TASKQ_{key.upper()}": value for key, value in taskq.items()})
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()


async def run_python(*args: str, env: dict[str, str], timeout: float = SUBPROCESS_TIMEOUT) -> Ran:
    """``python *args`` in the repository's root; killed after ``timeout`` seconds."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args,
        cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def tear_down(amqp_url: str, redis_url: str, exchange: str, tasks: Iterable[str]) -> None:
    """Delete the queues of ``tasks``, the dead letters and exchanges, and the status
    records of the deployment named ``exchange``."""
    app = TaskQueue(broker=amqp_url, store=redis_url, exchange=exchange)
    await remove_app(app, tasks, redis_url)
