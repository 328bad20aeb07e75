"""``taskq worker --processes N`` forks its workers from a zygote (``taskq.zygote``) on
Linux, under a supervisor that imports only the standard library: the children are
the zygote's, they are replaced when the zygote itself dies, and ``--start-method
spawn`` still starts fresh interpreters. The rest of the supervisor's guarantees are
tests/test_supervisor.py's, which run with the default (fork)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from taskq import TaskQueue
from taskq.bench.procs import children
from tests.deployment import ROOT, run_python, tear_down
from tests.test_cli import StartWorker, start_worker
from tests.test_supervisor import (
    Launch,
    client,
    env,
    launch,
    results,
    runs_of,
    send_touches,
)

# The fixtures of tests/test_supervisor.py and tests/test_cli.py.
__all__ = ["client", "env", "launch", "start_worker"]

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


async def test_the_supervisor_imports_no_driver() -> None:
    script = (
        "import sys, taskq.supervise\n"
        "heavy = ('aio_pika', 'aiormq', 'redis', 'pydantic', 'structlog', 'asyncio', 'uvloop')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    ran = await run_python("-c", script, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"


async def test_the_workers_are_forked_from_one_zygote_which_is_replaced_when_it_dies(
    launch: Launch, client: TaskQueue, redis_url: str, exchange: str
) -> None:
    sup = await launch("--processes", "2", "--concurrency", "4", workers=2)
    workers = sup.child_pids()
    zygotes = {parent_of(pid) for pid in workers}
    assert len(zygotes) == 1 and sup.proc.pid not in zygotes
    (zygote,) = zygotes
    assert parent_of(zygote) == sup.proc.pid and children(sup.proc.pid) == [zygote]
    first = await send_touches(client, 6)
    assert set(await results(first)) <= set(workers)

    # Its children get SIGTERM (PR_SET_PDEATHSIG) and stop; a new zygote forks two more.
    os.kill(zygote, signal.SIGKILL)
    # Both lines of each new worker: the supervisor's "worker process started" can be
    # written after the forked worker's own "worker started" (it learns the pid from the
    # zygote's answer, which it reads in its own time).
    await sup.until(
        "restarted the workers",
        lambda p: len(p.worker_pids()) == 4 and len(p.child_pids()) == 4,
        timeout=40,
    )
    died = [r for r in sup.records() if r["event"] == "worker process died; restarting"]
    assert sorted(r["pid"] for r in died) == sorted(workers)
    replaced = sup.child_pids()[2:]
    assert {parent_of(pid) for pid in replaced} - {zygote} and zygote not in replaced

    second = await send_touches(client, 6)
    assert set(await results(second)) <= set(replaced)
    assert await runs_of(redis_url, exchange, first + second) == [1] * 12
    assert await sup.stop() == 0


async def test_start_method_spawn_starts_fresh_interpreters(
    launch: Launch, client: TaskQueue
) -> None:
    sup = await launch("--processes", "2", "--start-method", "spawn", workers=2)

    assert {parent_of(pid) for pid in sup.child_pids()} == {sup.proc.pid}
    touches = await send_touches(client, 4)
    assert set(await results(touches)) <= set(sup.child_pids())
    assert await sup.stop() == 0


async def test_an_app_that_starts_threads_when_imported_is_warned_about(
    start_worker: StartWorker, amqp_url: str, redis_url: str, exchange: str
) -> None:
    started = await start_worker("--processes", "2", app="tests.threaded_app:app")
    try:
        records = [json.loads(line) for line in started.log.read_text().splitlines() if line]
        (warning,) = [r for r in records if r["event"].startswith("the app started threads")]
        assert warning["threads"] == ["import-time-thread"]
        assert warning["level"] == "warning"
    finally:
        started.proc.send_signal(signal.SIGTERM)
        assert await started.proc.wait() == 0
        await tear_down(amqp_url, redis_url, exchange, ["threaded.noop"])
