"""The PostgreSQL store through a real PgBouncer in transaction mode (a private one on
its own port, two server connections for dozens of clients): the schema is created
through it, and every kind of call, concurrent, lands on whichever server connection
is free, so any session state (a named prepared statement, a SET, a session lock)
would break it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest
import pytest_asyncio

from taskq import TaskQueue, TaskState, Worker
from taskq.ratelimit import RateLimit
from taskq.stores.base import Write
from taskq.stores.listing_base import TaskFilter
from taskq.stores.postgres import PostgresStore
from tests.conftest import REQUIRED, drop_pg_schema
from tests.faults.servers import ServerError
from tests.pg_servers import PgBouncer


@pytest.fixture(scope="module")
def bouncer(pg_url: str) -> Iterator[PgBouncer]:
    try:
        server = PgBouncer(urlsplit(pg_url).port or 5432, pool_size=2)
    except ServerError as exc:
        if REQUIRED:
            pytest.fail(f"{exc} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
        pytest.skip(str(exc))
    with server:
        yield server


@pytest_asyncio.fixture
async def stores(bouncer: PgBouncer, pg_url: str) -> AsyncIterator[list[PostgresStore]]:
    """Three stores of one schema through PgBouncer, as three processes would be."""
    schema = f"taskq_bouncer_{uuid.uuid4().hex[:10]}"
    database = urlsplit(pg_url).path.lstrip("/")
    made = [PostgresStore(bouncer.url(database), schema=schema) for _ in range(3)]
    try:
        await asyncio.gather(*(store.connect() for store in made))
        yield made
    finally:
        await asyncio.gather(*(store.close() for store in made))
        await drop_pg_schema(pg_url, schema)


async def test_every_kind_of_call_works_concurrently_through_pgbouncer(
    stores: list[PostgresStore],
) -> None:
    a, b, c = stores
    ids = [f"t{i}" for i in range(300)]
    created = await asyncio.gather(
        *(stores[i % 3].create(task_id, "work") for i, task_id in enumerate(ids)),
        *(a.create(task_id, "work") for task_id in ids[:50]),  # duplicates: refused
    )
    assert created.count(True) == 300
    started = await asyncio.gather(
        *(
            store.write_many([Write(t, "work", TaskState.STARTED) for t in ids[k::3]])
            for k, store in enumerate(stores)
        )
    )
    assert all(s is not None and s.attempts == 1 for batch in started for s in batch)
    done = await asyncio.gather(
        *(
            stores[i % 3].transition(t, "work", TaskState.SUCCEEDED, result={"i": i})
            for i, t in enumerate(ids)
        )
    )
    assert all(s is not None and s.state is TaskState.SUCCEEDED for s in done)
    counts = await b.count_tasks(TaskFilter(name="work"))
    assert counts[TaskState.SUCCEEDED] == 300
    assert len(await c.recent(name="work", limit=30)) == 30

    # Cancel, a chord's join, broadcast records, rate limits, schedule ticks.
    assert await a.create("x", "slow")
    cancelled = await b.cancel("x")
    assert cancelled is not None and cancelled.state is TaskState.CANCELLED
    assert await a.create_workflow("wf", {"kind": "chord"})
    fires = await asyncio.gather(
        *(stores[m % 3].join_member("wf", "0", m, 20) for m in range(20) for _ in range(2))
    )
    assert sum(fires) == 2  # the claiming member, and its own duplicate
    workers = await asyncio.gather(
        *(
            stores[w % 3].worker_transition("x", f"w{w}", "slow", TaskState.STARTED)
            for w in range(6)
        )
    )
    assert all(s is not None and s.state is TaskState.CANCELLED for s in workers)
    limit = RateLimit(10, 1.0)
    takes = await asyncio.gather(*(stores[i % 3].take_start("rl", limit) for i in range(10)))
    assert takes.count(0.0) == 1
    tick = datetime(2026, 1, 1, tzinfo=UTC)
    assert await a.record_tick("nightly", tick) and not await b.record_tick("nightly", tick)
    assert await c.last_tick("nightly") == tick


async def test_a_worker_runs_tasks_with_its_statuses_through_pgbouncer(
    bouncer: PgBouncer, amqp_url: str, pg_url: str, exchange: str
) -> None:
    database = urlsplit(pg_url).path.lstrip("/")
    app = TaskQueue(broker=amqp_url, store=bouncer.url(database), exchange=exchange)

    @app.task
    async def square(x: int) -> int:
        return x * x

    await app.connect()
    try:
        async with Worker(app, concurrency=16):
            handles = await square.send_many([((i,), {}) for i in range(200)])
            results = [await h.result(timeout=30) for h in handles]
        assert results == [i * i for i in range(200)]
    finally:
        try:
            await app.broker.destroy(list(app.tasks))
        finally:
            await app.close()
            assert isinstance(app.store, PostgresStore)
            await drop_pg_schema(pg_url, app.store.schema)
