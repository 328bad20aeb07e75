"""The PostgreSQL status store restarted mid-run (a private cluster of the test's own,
``pg_ctl stop -m immediate``: the connections drop as in a crash, recovery at the next
start): store calls fail with StoreError within the store timeout instead of hanging,
the worker requeues what it could not record, and once PostgreSQL is back every task
finishes, recorded once as succeeded. The worker, the publisher and the pool of the
store reconnect by themselves."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from taskq import TaskQueue, TaskState, Worker
from taskq.errors import StoreError
from taskq.stores.listing_base import TaskFilter
from taskq.stores.postgres import PostgresStore
from tests.conftest import REQUIRED
from tests.faults.harness import Figures, report
from tests.helpers import eventually
from tests.pg_servers import PostgresCluster, available, cluster_pids

#: The store timeout of this scenario (the default is 10 s): calls fail after it.
STORE_TIMEOUT = 3.0


@pytest.fixture
def cluster() -> Iterator[PostgresCluster]:
    reason = available()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
        pytest.skip(reason)
    with PostgresCluster() as server:
        yield server


@pytest.mark.timeout(180)
async def test_a_postgres_restart_mid_run_fails_calls_in_time_and_every_task_finishes(
    cluster: PostgresCluster, amqp_url: str, exchange: str
) -> None:
    count = 1000
    figures = Figures("pg restart (stop -m immediate, 2 s down)", tasks=count)
    app = TaskQueue(broker=amqp_url, store=cluster.url(), exchange=exchange, publish_timeout=10)
    store = app.store
    assert isinstance(store, PostgresStore)
    store.timeout = STORE_TIMEOUT
    errors: list[float] = []
    store.on_error(lambda _: errors.append(time.monotonic()))
    runs: Counter[int] = Counter()

    # A task whose outcome could not be recorded is redelivered: a new attempt, which
    # its retries allow (with none left, it would be dead-lettered as a poison message).
    @app.task
    async def touch(i: int) -> int:
        runs[i] += 1
        await asyncio.sleep(0.005)
        return i

    async def succeeded() -> int:
        counts = await store.count_tasks(TaskFilter(name=touch.name))
        return counts[TaskState.SUCCEEDED]

    await app.connect()
    try:
        handles = await touch.send_many([((i,), {}) for i in range(count)])
        async with Worker(app, concurrency=8):
            await eventually(succeeded, lambda n: n >= count // 5, timeout=60)
            stopping = time.monotonic()
            await asyncio.to_thread(cluster.stop, "immediate")
            # A call while it is down fails with StoreError, within the store timeout.
            asked = time.monotonic()
            with pytest.raises(StoreError):
                await store.get(handles[0].id)
            figures.notes["failed_call_s"] = round(time.monotonic() - asked, 2)
            assert time.monotonic() - asked < STORE_TIMEOUT + 2
            await asyncio.sleep(2)
            await asyncio.to_thread(cluster.start)
            back = time.monotonic()
            figures.notes["down_s"] = round(back - stopping, 1)
            done = await eventually(succeeded, lambda n: n >= count, timeout=90)
            figures.notes["drained_after_s"] = round(time.monotonic() - back, 1)
        statuses = [await h.status() for h in handles]
    finally:
        try:
            await app.broker.destroy(list(app.tasks))
        finally:
            await app.close()
    assert done == count
    assert all(s is not None and s.state is TaskState.SUCCEEDED for s in statuses)
    assert set(runs) == set(range(count))  # none lost
    assert any(t >= stopping for t in errors), "the restart hit no store call"
    figures.ran_twice = sum(1 for n in runs.values() if n > 1)
    figures.notes["store_errors"] = len(errors)
    report(figures)


@pytest.mark.timeout(60)
async def test_a_stalled_postgres_fails_calls_at_the_store_timeout_then_recovers(
    cluster: PostgresCluster,
) -> None:
    store = PostgresStore(cluster.url(), prefix="stalled")
    store.timeout = 2.0
    await store.connect()
    pids = cluster_pids(cluster)
    try:
        assert await store.create("t", "work")
        for pid in pids:  # every process frozen: connections open, nothing answers
            os.kill(pid, signal.SIGSTOP)
        asked = time.monotonic()
        with pytest.raises(StoreError, match="no answer in time"):
            await store.transition("t", "work", TaskState.STARTED)
        waited = time.monotonic() - asked
        assert 1.5 <= waited < 4.0, waited
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
    try:
        status = await eventually(lambda: store.get("t"), lambda s: s is not None, timeout=20)
        assert status is not None and status.state in (TaskState.QUEUED, TaskState.STARTED)
    finally:
        await store.close()
