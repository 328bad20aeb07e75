"""A deployment spread over hosts of a network of their own (``tests/faults/netns.py``):
the broker, the status store, an API host that sends, and worker hosts. Shared by the
worker-host fault test and the drain rate with 1, 2 and 3 worker hosts
(``tests/faults/test_worker_hosts.py``; ``python -m tests.faults.worker_hosts`` prints
the drain figures of bigger runs)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from tests.faults.conftest import FAST_RECONNECT, with_query
from tests.faults.harness import ROOT, Deployment, Fleet, WorkerProc, events, runs_key
from tests.faults.netns import Host, NetRabbitNode, NetRedis, Network, sweep_namespaces

WORKER_HOSTS = ("w1", "w2", "w3")
SEND_TIMEOUT = 120.0


@dataclass
class Hosts:
    network: Network
    node: NetRabbitNode
    redis: NetRedis

    @property
    def api(self) -> Host:
        return self.network.hosts["api"]

    def workers(self, count: int = len(WORKER_HOSTS)) -> list[Host]:
        return [self.network.hosts[name] for name in WORKER_HOSTS[:count]]

    def deployment(self, *, heartbeat: int | None = None) -> Deployment:
        """A deployment of its own (exchange) as the hosts see it; ``heartbeat=None``:
        taskq's default."""
        query = FAST_RECONNECT + ("" if heartbeat is None else f"&heartbeat={heartbeat}")
        return Deployment(
            broker_url=with_query(self.node.amqp_url, query),
            store_url=self.redis.url,
            counter_url=self.redis.url,
        )

    def local(self, deployment: Deployment) -> Deployment:
        """The same deployment as the test's own process reaches its store."""
        return replace(deployment, store_url=self.redis.local_url, counter_url=self.redis.local_url)


@contextlib.contextmanager
def hosts() -> Iterator[Hosts]:
    sweep_namespaces()
    with (
        Network(["broker", "store", "api", *WORKER_HOSTS]) as network,
        NetRedis(network.hosts["store"]) as redis,
        NetRabbitNode(
            network.hosts["broker"], config=["vm_memory_high_watermark.absolute = 512MB"]
        ) as node,
    ):
        yield Hosts(network, node, redis)


async def send_from(
    host: Host,
    deployment: Deployment,
    ids: Sequence[str],
    *,
    seconds: float,
    concurrency: int,
    bulk: bool = False,
) -> dict[str, Any]:
    """Send ``fault.touch(id, seconds)`` for every id from a process on ``host``
    (``bulk``: ``send_many``); what ``tests.faults.netns_publish`` reported."""
    proc = await asyncio.create_subprocess_exec(
        *host.prefix, sys.executable, "-m", "tests.faults.netns_publish", str(seconds),
        str(concurrency), *(["bulk"] if bulk else []),
        cwd=ROOT, env=deployment.environment(), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(proc.communicate("\n".join(ids).encode()), SEND_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return report


def stamp(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))


def first_after(worker: WorkerProc, moment: datetime, event: str, **fields: Any) -> datetime | None:
    """When ``worker`` first logged an event starting with ``event`` (with ``fields``)
    after ``moment``."""
    for e in events(worker.log):
        if str(e.get("event", "")).startswith(event) and stamp(e) > moment:
            if all(e.get(k) == v for k, v in fields.items()):
                return stamp(e)
    return None


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU the processes ``pids`` used so far (0 for one that is gone)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / ticks


def succeeded_count(worker: WorkerProc) -> int:
    try:
        return worker.log.read_bytes().count(b'"event": "task succeeded"')
    except FileNotFoundError:
        return 0


async def drain(
    hosts: Hosts, worker_hosts: int, tasks: int, log_dir: Path, *, concurrency: int = 20
) -> dict[str, Any]:
    """Start one worker process on each of ``worker_hosts`` hosts, and once they all
    consume, send ``tasks`` no-wait ``fault.touch`` tasks at once (``send_many``) from
    the API host; time the drain from the first task finished to the last (the workers'
    own log stamps): tasks per second, and how many each host ran. Its queues stay on
    the node, empty, until the node goes."""
    deployment = hosts.deployment()
    local = hosts.local(deployment)
    ids = [f"drain-{n:06d}" for n in range(tasks)]
    fleet = Fleet(deployment, log_dir)
    counter = aioredis.from_url(local.counter_url)
    try:
        workers = [
            fleet.start("--concurrency", str(concurrency), prefix=host.prefix)
            for host in hosts.workers(worker_hosts)
        ]
        for worker in workers:
            await fleet.wait_started(worker)
        pids = {
            "workers": [w.proc.pid for w in workers],
            "broker": [hosts.node.beam_pid() or 0],
            "redis": [hosts.redis.pid],
        }
        cpu_before = {part: cpu_seconds(p) for part, p in pids.items()}
        sent = await send_from(hosts.api, deployment, ids, seconds=0.0, concurrency=1, bulk=True)
        assert sent["confirmed"] == tasks, sent
        deadline = time.monotonic() + 180
        # Done when every task's "task succeeded" line is in the logs (its run counted
        # in Redis comes before its outcome is recorded and logged).
        while sum(succeeded_count(w) for w in workers) < tasks:
            assert time.monotonic() < deadline, "the drain did not finish in 180 s"
            assert all(w.alive for w in workers), "a worker died"
            await asyncio.sleep(0.25)
        assert await counter.hlen(runs_key(deployment.exchange)) == tasks
        stamps = sorted(
            stamp(e) for w in workers for e in events(w.log) if e.get("event") == "task succeeded"
        )
        span = (stamps[-1] - stamps[0]).total_seconds()
        cpu = {part: cpu_seconds(p) - cpu_before[part] for part, p in pids.items()}
        codes = await fleet.terminate()
        assert codes == [0] * len(codes), codes
        return {
            "worker_hosts": worker_hosts,
            "tasks": tasks,
            "seconds": round(span, 2),
            "per_second": round((len(stamps) - 1) / span) if span > 0 else None,
            "share": [succeeded_count(w) for w in workers],
            # CPU a task cost each part, in microseconds (the API host's sends not counted).
            "cpu_us": {part: round(seconds * 1e6 / tasks) for part, seconds in cpu.items()},
        }
    finally:
        fleet.close()
        await counter.aclose()


async def _main() -> None:
    """The drain figures for the README: ``python -m tests.faults.worker_hosts [TASKS]``."""
    tasks = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    with hosts() as net, tempfile.TemporaryDirectory() as logs:
        for count in (1, 2, 3, 1, 2, 3):
            print(json.dumps(await drain(net, count, tasks, Path(logs))), flush=True)


if __name__ == "__main__":
    asyncio.run(_main())
