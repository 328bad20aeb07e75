"""Worker hosts on a network of their own (network namespaces: ``netns.py``): one is
cut off silently for longer than its heartbeat while the hosts drain; its tasks finish
on the other hosts, its late writes change no recorded outcome, and it comes back by
itself. And a round of the drain rate by worker hosts (figures, not asserted).

``TASKQ_NETNS_HEARTBEAT`` (seconds, default 2) is the heartbeat of the cut scenario's
URLs; the README's figures for taskq's default (30 s) come from a run with it set to 30.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRED
from tests.faults.conftest import with_query
from tests.faults.harness import (
    Figures,
    Fleet,
    StateWatcher,
    WorkerProc,
    events,
    report,
    running_count,
    task_ids,
    verdict,
)
from tests.faults.netns import unavailable
from tests.faults.worker_hosts import (
    Hosts,
    drain,
    first_after,
    hosts,
    send_from,
    stamp,
    succeeded_count,
)
from tests.helpers import eventually

HEARTBEAT = int(os.environ.get("TASKQ_NETNS_HEARTBEAT", "2"))
#: aiormq gives up on a connection silent for 3 x (heartbeat + 1) s, looking every
#: heartbeat / 2 s; RabbitMQ after about 3 x heartbeat: the cut lasts longer than both.
CUT_AT_LEAST = 3 * (HEARTBEAT + 1) + HEARTBEAT // 2 + 3


@pytest.fixture(scope="module")
def net() -> Iterator[Hosts]:
    reason = unavailable()
    if reason is not None:
        if REQUIRED and os.geteuid() == 0:
            pytest.fail(reason)
        pytest.skip(reason)
    with hosts() as made:
        yield made


@pytest.mark.timeout(90 + 8 * HEARTBEAT)
async def test_a_worker_host_cut_off_longer_than_its_heartbeat_loses_nothing(
    net: Hosts, tmp_path: Path
) -> None:
    figures = Figures(f"worker host cut (heartbeat {HEARTBEAT}s)")
    deployment = net.deployment(heartbeat=HEARTBEAT)
    local = net.local(deployment)
    fleet = Fleet(deployment, tmp_path)
    first = task_ids("cut", 400)
    after = task_ids("back", 200)
    figures.tasks = len(first) + len(after)
    try:
        cut_host = net.workers()[0]
        workers = await _start_workers(net, fleet)
        cut_worker = workers[0]
        async with StateWatcher(local.store_url, local.exchange, first + after) as watcher:
            # 400 tasks of 0.25 s over 12 slots: about 8 s of work.
            sending = asyncio.create_task(
                send_from(net.api, deployment, first, seconds=0.25, concurrency=20)
            )
            await eventually(lambda: _succeeded(cut_worker), lambda n: n >= 8)
            await asyncio.to_thread(net.network.cut, cut_host)
            cut_at, cut_wall = time.monotonic(), datetime.now(UTC)
            figures.cuts = 1
            sent = await sending
            assert sent["confirmed"] == len(first), sent

            # The broker notices the silent host by its heartbeat and requeues what it
            # held: the other hosts finish every task of the first batch meanwhile.
            done = await verdict(local, first, timeout=60 + 4 * HEARTBEAT)
            assert not done.lost, f"not finished while the host was cut: {done.by_state()}"
            finished_all = time.monotonic() - cut_at
            left = CUT_AT_LEAST - (time.monotonic() - cut_at)
            if left > 0:
                await asyncio.sleep(left)
            await asyncio.to_thread(net.network.restore, cut_host)
            restored_wall = datetime.now(UTC)
            cut_for = time.monotonic() - cut_at

            # It comes back by itself, and takes its share of new work.
            await eventually(
                lambda: _first_after(cut_worker, restored_wall, _RESUMED),
                lambda when: when is not None,
                timeout=30 + 4 * HEARTBEAT,
            )
            before = succeeded_count(cut_worker)
            sent = await send_from(net.api, deployment, after, seconds=0.05, concurrency=20)
            assert sent["confirmed"] == len(after), sent
            result = await verdict(local, first + after, fleet=fleet, timeout=60)
        figures.record(result)
        requeued_elsewhere = _redelivered_elsewhere(workers[1:], cut_wall)
        noticed = first_after(cut_worker, cut_wall, _NOTICED)
        resumed = first_after(cut_worker, restored_wall, _RESUMED)
        late = [
            e for e in events(cut_worker.log) if e.get("event") in _LATE and _after(e, cut_wall)
        ]
        figures.notes.update(
            heartbeat=f"{HEARTBEAT}s",
            tasks_back_elsewhere=_seconds(requeued_elsewhere, cut_wall),
            first_batch_done=f"{finished_all:.1f}s",
            host_noticed=_seconds(noticed, cut_wall),
            cut_for=f"{cut_for:.1f}s",
            reconnected_after_restore=_seconds(resumed, restored_wall),
            late_writes=len(late),
        )
        report(figures)

        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": len(first) + len(after)}
        assert requeued_elsewhere is not None, "no task of the cut host was redelivered"
        assert resumed is not None, "the cut host did not consume again"
        assert succeeded_count(cut_worker) > before, "the cut host ran none of the new tasks"
        assert all(w.alive for w in workers), "a worker died"
        codes = await fleet.terminate()
        assert codes == [0] * len(codes), codes
        # rabbitmqctl's counts of quorum queues lag up to 5 s behind.
        await eventually(
            lambda: asyncio.to_thread(net.node.queue_depths, deployment.exchange + "."),
            lambda depths: not any(depths.values()),
            timeout=15,
            interval=2,
        )
    finally:
        fleet.close()


@pytest.mark.timeout(60 + 8 * HEARTBEAT)
async def test_the_late_writes_of_a_host_that_was_cut_off_change_no_recorded_outcome(
    net: Hosts, tmp_path: Path
) -> None:
    """The host finishes its running tasks while cut off; their ``succeeded`` writes wait
    in its TCP connection to Redis (a long store timeout keeps them there) while the
    broker gives its tasks to the other hosts, which record them. The network returns
    and the writes land late: refused, the first outcome kept, nothing recorded twice."""
    figures = Figures(f"worker host late writes (heartbeat {HEARTBEAT}s)")
    deployment = net.deployment(heartbeat=HEARTBEAT)
    # Longer than the broker takes to requeue: the writes wait for the network.
    store_timeout = 4 * HEARTBEAT + 30
    deployment.store_url = with_query(deployment.store_url, f"socket_timeout={store_timeout}")
    local = net.local(deployment)
    fleet = Fleet(deployment, tmp_path)
    ids = task_ids("late", 24)  # 12 slots: two rounds of 1 s
    figures.tasks = len(ids)
    try:
        cut_host = net.workers()[0]
        workers = await _start_workers(net, fleet)
        cut_worker = workers[0]
        async with StateWatcher(local.store_url, local.exchange, ids) as watcher:
            sent = await send_from(net.api, deployment, ids, seconds=1.0, concurrency=24)
            assert sent["confirmed"] == len(ids), sent
            await eventually(
                lambda: running_count(local, ids), lambda n: n >= 12, timeout=20, interval=0.02
            )
            await asyncio.sleep(0.3)  # its four tasks are running, none has finished
            await asyncio.to_thread(net.network.cut, cut_host)
            cut_at, cut_wall = time.monotonic(), datetime.now(UTC)
            figures.cuts = 1
            # Every task recorded, the cut host's four by the others after the broker
            # requeued them; then the network comes back.
            done = await verdict(local, ids, timeout=60 + 4 * HEARTBEAT)
            assert not done.lost, done.by_state()
            await asyncio.to_thread(net.network.restore, cut_host)
            restored_wall = datetime.now(UTC)
            figures.notes["cut_for"] = f"{time.monotonic() - cut_at:.1f}s"
            await eventually(
                lambda: _first_after(cut_worker, restored_wall, _REFUSED),
                lambda when: when is not None,
                timeout=30 + HEARTBEAT,
            )
            result = await verdict(local, ids, fleet=fleet, timeout=30)
        figures.record(result)
        refused = [
            e for e in events(cut_worker.log) if e.get("event") == _REFUSED and _after(e, cut_wall)
        ]
        figures.notes.update(late_writes_refused=len(refused))
        report(figures)

        result.assert_promise(watcher.regressions)
        assert result.by_state() == {"succeeded": len(ids)}
        assert refused, "no late write of the cut host reached the store"
        assert all(w.alive for w in workers), "a worker died"
        codes = await fleet.terminate()
        assert codes == [0] * len(codes), codes
    finally:
        fleet.close()


async def test_a_drain_round_reports_its_rate_its_hosts_shares_and_their_cpu(
    net: Hosts, tmp_path: Path
) -> None:
    """The figures' measurement (``python -m tests.faults.worker_hosts`` runs it with 1,
    2 and 3 hosts and 5,000 tasks), small: one round on two hosts."""
    figures = Figures("drain by worker hosts", tasks=100)
    outcome = await drain(net, 2, 100, tmp_path)
    assert set(outcome) == {"worker_hosts", "tasks", "seconds", "per_second", "share", "cpu_us"}
    assert len(outcome["share"]) == 2 and sum(outcome["share"]) == 100
    assert set(outcome["cpu_us"]) == {"workers", "broker", "redis"}
    figures.notes.update(hosts=2, per_second=outcome["per_second"], cpu_us=outcome["cpu_us"])
    report(figures)


_NOTICED = "Server connection"
_RESUMED = "consuming again after a reconnect"
_REFUSED = "task ran again after it had finished; first outcome kept"
_LATE = (
    _REFUSED,
    "status store unavailable; requeueing",
)


async def _start_workers(net: Hosts, fleet: Fleet) -> list[WorkerProc]:
    """A worker of 4 slots on each worker host, consuming."""
    workers = [fleet.start("--concurrency", "4", prefix=h.prefix) for h in net.workers()]
    for worker in workers:
        await fleet.wait_started(worker)
    return workers


async def _succeeded(worker: WorkerProc) -> int:
    return succeeded_count(worker)


async def _first_after(worker: WorkerProc, moment: datetime, event: str) -> datetime | None:
    return first_after(worker, moment, event)


def _redelivered_elsewhere(workers: list[WorkerProc], moment: datetime) -> datetime | None:
    """The first task another host finished after ``moment`` on its second attempt."""
    found = [
        when
        for w in workers
        if (when := first_after(w, moment, "task succeeded", attempt=2)) is not None
    ]
    return min(found) if found else None


def _after(event: dict[str, Any], moment: datetime) -> bool:
    return stamp(event) > moment


def _seconds(when: datetime | None, since: datetime) -> str:
    return "never" if when is None else f"{(when - since).total_seconds():.1f}s"
