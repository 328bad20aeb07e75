"""What every fault scenario needs: worker processes to kill, tasks to publish, and the
oracle that says whether the promise held.

The promise: **a task confirmed at publish is never lost, and a task that succeeded is
never recorded twice**, whatever happens to workers, connections and the broker. The
oracle checks it three ways:

- *lost*: confirmed task ids without a terminal state in the status store once the
  run settled (``queued`` or ``started`` forever means a message vanished);
- *recorded twice*: ``task succeeded`` log events per task id across every worker's
  log, and a :class:`StateWatcher` that samples the store during the run and flags
  any record that moved away from ``succeeded``;
- *ran twice*: the side effects the tasks count in Redis (``fault_app.RUNS_KEY``):
  at-least-once delivery allows a rerun after a crash, so this is reported, and only
  asserted where a scenario promises it.

Reused by later scenarios (poison messages, retries, time limits): start a
:class:`Fleet`, :func:`publish` tasks, :func:`verdict` them, :func:`report` the figures.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aio_pika
import redis.asyncio as aioredis

from taskq import TaskQueue
from taskq.errors import BrokerError
from taskq.loops import cancel_requested
from tests.deployment import environment
from tests.faults.sentinel import store_client
from tests.faults.servers import RabbitNode

ROOT = Path(__file__).resolve().parents[2]
APP_PATH = "tests.faults.fault_app:app"
TOUCH = "fault.touch"
FINISHED = ("succeeded", "failed")


# -- figures ------------------------------------------------------------------------


@dataclass
class Figures:
    """One scenario's numbers, printed as one line and collected for the session's
    summary (and appended to ``$TASKQ_FAULT_FIGURES`` when set)."""

    scenario: str
    tasks: int = 0
    kills: int = 0
    cuts: int = 0
    lost: int = 0
    ran_twice: int = 0
    recorded_twice: int = 0
    seconds: float = 0.0
    notes: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic, repr=False)

    def record(self, verdict: Verdict) -> None:
        """Take ``lost``, ``ran_twice`` and ``recorded_twice`` from the oracle's verdict."""
        self.lost = len(verdict.lost)
        self.ran_twice = len(verdict.ran_twice)
        self.recorded_twice = len(verdict.recorded_twice)

    def line(self) -> str:
        extra = " ".join(f"{k}={v}" for k, v in self.notes.items())
        return (
            f"FAULT {self.scenario}: tasks={self.tasks} kills={self.kills} cuts={self.cuts} "
            f"lost={self.lost} ran_twice={self.ran_twice} recorded_twice={self.recorded_twice} "
            f"time={self.seconds:.1f}s" + (f" {extra}" if extra else "")
        )


FIGURES: list[Figures] = []


def report(figures: Figures) -> None:
    figures.seconds = time.monotonic() - figures.started
    FIGURES.append(figures)
    line = figures.line()
    print(line, flush=True)
    target = os.environ.get("TASKQ_FAULT_FIGURES")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(line + "\n")


# -- a deployment and its worker processes ------------------------------------------


@dataclass
class Deployment:
    """Where one scenario's processes point: the broker URL workers use (maybe through
    a proxy), the status store, the Redis that counts side effects, the exchange."""

    broker_url: str
    store_url: str
    counter_url: str
    exchange: str = field(default_factory=lambda: f"taskq-fault-{uuid.uuid4().hex[:10]}")

    def app(self, broker_url: str | None = None, *, publish_timeout: float = 10.0) -> TaskQueue:
        """An app in the test's process, on this deployment (or another broker URL:
        the same broker without the proxy, say)."""
        return TaskQueue(
            broker=broker_url or self.broker_url,
            store=self.store_url,
            exchange=self.exchange,
            publish_timeout=publish_timeout,
        )

    def environment(self, **extra: str) -> dict[str, str]:
        env = environment(
            broker_url=self.broker_url, store_url=self.store_url, exchange=self.exchange
        )
        env["TASKQ_FAULT_COUNTER_URL"] = self.counter_url
        env.update(extra)
        return env


@dataclass(eq=False)
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: Path
    args: tuple[str, ...]
    extra_env: dict[str, str]

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Fleet:
    """``taskq worker`` processes of one deployment; each logs JSON lines to a file of
    its own (a pipe nobody reads would fill up and block it). Whatever is still running
    at :meth:`close` is killed."""

    def __init__(self, deployment: Deployment, log_dir: Path, *, app_path: str = APP_PATH):
        self.deployment = deployment
        self.log_dir = log_dir
        self.app_path = app_path
        self.procs: list[WorkerProc] = []
        self.kills = 0
        self._files = ExitStack()

    def start(self, *args: str, prefix: Sequence[str] = (), **extra_env: str) -> WorkerProc:
        """A worker; ``prefix``: what runs it (``ip netns exec <host>``: tests/faults/netns.py)."""
        log = self.log_dir / f"{self.deployment.exchange}-worker-{len(self.procs)}.log"
        out: IO[bytes] = self._files.enter_context(log.open("wb"))
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "taskq", "worker", self.app_path, "--log-format",
             "json", *args],
            cwd=ROOT,
            env=self.deployment.environment(**extra_env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )  # fmt: skip
        worker = WorkerProc(proc, log, args, extra_env)
        self.procs.append(worker)
        return worker

    def restart(self, worker: WorkerProc) -> WorkerProc:
        """A new process with the same options (a supervisor restarting a crash)."""
        return self.start(*worker.args, **worker.extra_env)

    def kill(self, worker: WorkerProc) -> None:
        """kill -9: no stop, no goodbye to the broker; its unacked messages come back."""
        if worker.alive:
            worker.proc.send_signal(signal.SIGKILL)
            self.kills += 1
        worker.proc.wait(10)

    @property
    def alive(self) -> list[WorkerProc]:
        return [w for w in self.procs if w.alive]

    async def wait_started(self, worker: WorkerProc, timeout: float = 30.0) -> None:
        """Until the worker logged ``worker started`` (it is consuming)."""
        deadline = time.monotonic() + timeout
        while "worker started" not in {e.get("event") for e in events(worker.log)}:
            if not worker.alive:
                raise AssertionError(f"worker exited {worker.proc.returncode}: {tail(worker.log)}")
            if time.monotonic() > deadline:
                raise AssertionError(f"worker not started in {timeout}s: {tail(worker.log)}")
            await asyncio.sleep(0.1)

    async def terminate(self, timeout: float = 60.0) -> list[int]:
        """SIGTERM to every live worker; their exit codes."""
        live = self.alive
        for worker in live:
            worker.proc.send_signal(signal.SIGTERM)
        return [await asyncio.to_thread(w.proc.wait, timeout) for w in live]

    def events(self) -> list[dict[str, Any]]:
        return [e for w in self.procs for e in events(w.log)]

    def close(self) -> None:
        for worker in self.procs:
            if worker.alive:
                worker.proc.kill()
            try:
                worker.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        self._files.close()


_STUCK = (
    "grace period over; cancelling running tasks",
    "could not settle the message; left for redelivery",
)


async def stop_cleanly(fleet: Fleet, node: RabbitNode, *, dead_letters: int = 0) -> None:
    """The end of every scenario: SIGTERM to the live workers, each exits 0, and no
    message is left in the deployment's queues but ``dead_letters`` expected ones."""
    codes = await fleet.terminate()
    assert codes == [0] * len(codes), f"worker exit codes {codes}"
    # With every task done, nothing may keep a runner busy until the grace period, and
    # settling may fail only in the ways it knows (a lost channel).
    stuck = [e for e in fleet.events() if e.get("event") in _STUCK]
    assert not stuck, stuck[:3]
    depths = await queue_depths(node, fleet.deployment.exchange)
    dead = f"{fleet.deployment.exchange}.dead"
    expected = {dead: dead_letters} if dead_letters else {}
    assert {q: n for q, n in depths.items() if n} == expected, depths


def events(log: Path) -> list[dict[str, Any]]:
    """The JSON log lines of a worker (anything else, e.g. a crash's traceback, skipped)."""
    found = []
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue  # the last line of a killed process may be cut short
    return found


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


# -- publishing -----------------------------------------------------------------------


@dataclass
class Published:
    confirmed: list[str] = field(default_factory=list)
    #: Ids whose publish raised, with the error (PublishError and other BrokerErrors).
    failed: dict[str, BaseException] = field(default_factory=dict)


async def publish(
    app: TaskQueue,
    ids: Sequence[str],
    *,
    seconds: float = 0.0,
    task: str = TOUCH,
    concurrency: int = 100,
    pause: float = 0.0,
) -> Published:
    """Send ``task(key=id, seconds)`` with ``task_id=id`` for every id, ``concurrency``
    at a time, optionally ``pause`` seconds between sends. A publish that raised a
    :class:`BrokerError` is recorded as failed; any other error fails the test."""
    out = Published()
    gate = asyncio.Semaphore(concurrency)

    async def one(task_id: str) -> None:
        async with gate:
            try:
                await app.send(task, args=[task_id, seconds], task_id=task_id)
            except BrokerError as exc:
                out.failed[task_id] = exc
            else:
                out.confirmed.append(task_id)
            if pause:
                await asyncio.sleep(pause)

    await asyncio.gather(*(one(i) for i in ids))
    return out


async def resend_until_confirmed(
    app: TaskQueue, failed: Iterable[str], *, pause: float = 1.0
) -> list[str]:
    """Re-send each failed id (same id: an idempotent re-send) until it is confirmed;
    bounded. Returns the ids that never went through."""
    left = list(failed)
    for _ in range(10):
        if not left:
            break
        again = await publish(app, left)
        left = list(again.failed)
        if left:
            await asyncio.sleep(pause)
    return left


def task_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{n:05d}-{uuid.uuid4().hex[:8]}" for n in range(count)]


# -- the oracle -----------------------------------------------------------------------


def runs_key(exchange: str) -> str:
    """The Redis hash where ``fault_app``'s tasks count their runs (``RUNS_KEY`` there)."""
    return f"{exchange}:fault-runs"


async def queue_depths(node: RabbitNode, exchange: str) -> dict[str, int]:
    """Ready messages in each queue of ``exchange``'s deployment, counted by a passive
    declare (``rabbitmqctl list_queues`` counts lag up to 5 s behind on quorum queues).
    Unacked messages are not counted: call it once no worker is connected. A worker's
    exclusive queues (control, broadcast) are left out: only their own connection may
    declare them, even passively, and they never hold tasks."""
    names = []
    for line in node.ctl("list_queues", "name", "exclusive", "--no-table-headers").splitlines():
        name, _, exclusive = line.strip().partition("\t")  # "" or "false" when not
        if name.startswith(exchange + ".") and exclusive.strip() != "true":
            names.append(name)
    connection = await aio_pika.connect(node.amqp_url)
    try:
        depths = {}
        for name in names:
            channel = await connection.channel()
            queue = await channel.declare_queue(name, passive=True)
            depths[name] = queue.declaration_result.message_count or 0
            await channel.close()
        return depths
    finally:
        await connection.close()


def record_key(exchange: str, task_id: str) -> str:
    """The Redis store's key of a task record (see ``taskq/stores/redis.py``)."""
    return f"{exchange}:task:{task_id}"


async def read_states(client: aioredis.Redis, exchange: str, ids: Sequence[str]) -> list[Any]:
    """Every id's stored state (bytes) or ``None``, in one round trip."""
    async with client.pipeline(transaction=False) as pipe:
        for task_id in ids:
            pipe.hget(record_key(exchange, task_id), "state")
        return list(await pipe.execute())


async def count_states(deployment: Deployment, ids: Sequence[str], *states: bytes) -> int:
    """How many of ``ids`` are in one of ``states`` (as stored: ``b"started"``) now."""
    client = store_client(deployment.store_url)
    try:
        found = await read_states(client, deployment.exchange, ids)
    finally:
        await client.aclose()
    return sum(s in states for s in found)


async def finished_count(deployment: Deployment, ids: Sequence[str]) -> int:
    """How many of ``ids`` have a terminal state in the store now."""
    return await count_states(deployment, ids, b"succeeded", b"failed")


async def running_count(deployment: Deployment, ids: Sequence[str]) -> int:
    return await count_states(deployment, ids, b"started")


class StateWatcher:
    """Samples the stored state of ``ids`` every ``interval`` while a scenario runs and
    remembers any record that moved away from ``succeeded`` (it never may). A store
    that is down while sampled is simply not sampled that round."""

    def __init__(self, store_url: str, exchange: str, ids: Sequence[str], interval: float = 0.3):
        self.store_url = store_url
        self.exchange = exchange
        self.ids = list(ids)
        self.interval = interval
        self.regressions: dict[str, list[Any]] = {}
        self.samples = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> StateWatcher:
        self._task = asyncio.create_task(self._watch())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        # The loop checks cancel_requested as well as catching the cancel: redis-py
        # sends with asyncio.wait_for, which on Python 3.11 swallows a cancel that lands
        # as the send completes (about one cancel in ten here, measured), and a loop that
        # only waits to be cancelled then samples forever. The wait is bounded all the same.
        self._task.cancel()
        await asyncio.wait([self._task], timeout=5)

    async def _watch(self) -> None:
        client = store_client(self.store_url, socket_timeout=2, socket_connect_timeout=2)
        succeeded: set[str] = set()
        try:
            while not cancel_requested():
                try:
                    states = await read_states(client, self.exchange, self.ids)
                except (OSError, aioredis.RedisError):
                    states = None
                if states is not None:
                    self.samples += 1
                    for task_id, state in zip(self.ids, states, strict=True):
                        if state == b"succeeded":
                            succeeded.add(task_id)
                        elif task_id in succeeded:
                            self.regressions.setdefault(task_id, []).append(state)
                await asyncio.sleep(self.interval)
        finally:
            await client.aclose()


@dataclass
class Verdict:
    states: dict[str, str | None]
    runs: dict[str, int]
    #: Confirmed ids with no terminal state: their message vanished.
    lost: list[str]
    #: Ids whose side effect happened more than once (at-least-once reruns).
    ran_twice: list[str]
    #: Ids with more than one ``task succeeded`` log event.
    recorded_twice: list[str]
    #: Ids recorded ``succeeded`` whose side effect never happened (impossible).
    phantom: list[str]

    def by_state(self) -> Counter[str | None]:
        return Counter(self.states.values())

    def assert_promise(self, regressions: dict[str, Any] | None = None) -> None:
        assert not self.lost, (
            f"{len(self.lost)} confirmed tasks lost (no terminal state): "
            f"{self.lost[:10]} states={Counter(self.states[i] for i in self.lost)}"
        )
        assert not self.recorded_twice, f"recorded succeeded twice: {self.recorded_twice[:10]}"
        moved = dict(list((regressions or {}).items())[:10])
        assert not regressions, f"records moved back from succeeded: {moved}"
        assert not self.phantom, f"succeeded without running: {self.phantom[:10]}"


async def verdict(
    deployment: Deployment,
    ids: Iterable[str],
    *,
    fleet: Fleet | None = None,
    timeout: float = 60.0,
) -> Verdict:
    """Wait (up to ``timeout``) until every id has a terminal state, then judge."""
    ids = list(ids)
    store = store_client(deployment.store_url)
    counter = aioredis.from_url(deployment.counter_url)
    try:
        deadline = time.monotonic() + timeout
        while True:
            raw = await read_states(store, deployment.exchange, ids)
            states = {i: s.decode() if s else None for i, s in zip(ids, raw, strict=True)}
            open_ids = [i for i, s in states.items() if s not in FINISHED]
            if not open_ids or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.25)
        raw_runs = await counter.hgetall(runs_key(deployment.exchange))
        runs = {k.decode(): int(v) for k, v in raw_runs.items()}
    finally:
        await store.aclose()
        await counter.aclose()
    recorded: Counter[str] = Counter()
    if fleet is not None:
        recorded.update(e["task_id"] for e in fleet.events() if e.get("event") == "task succeeded")
    return Verdict(
        states=states,
        runs=runs,
        lost=open_ids,
        ran_twice=sorted(i for i in ids if runs.get(i, 0) > 1),
        recorded_twice=sorted(i for i, n in recorded.items() if n > 1),
        phantom=sorted(i for i in ids if states[i] == "succeeded" and runs.get(i, 0) == 0),
    )
