"""A PostgreSQL failover under a multi-host URL (issue 17): a private primary and its
streaming standby, the store given ``postgresql://primary,standby/...?
target_session_attrs=read-write``. The primary is killed (``stop -m immediate``): calls
fail with StoreError (the standby is read-only, so no host qualifies) instead of
writing to the wrong server; once the standby is promoted, the same store object
writes to it, with every record the primary had replicated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import asyncpg
import pytest

from taskq.errors import StoreError
from taskq.status import TaskState
from taskq.stores.base import Write
from taskq.stores.postgres import PostgresStore
from tests.conftest import REQUIRED
from tests.faults.harness import Figures, report
from tests.helpers import eventually
from tests.pg_servers import PostgresCluster, available


@pytest.fixture
def pair() -> Iterator[tuple[PostgresCluster, PostgresCluster]]:
    reason = available()
    if reason is not None:
        if REQUIRED:
            pytest.fail(f"{reason} and TASKQ_REQUIRE_BROKER=1", pytrace=False)
        pytest.skip(reason)
    with PostgresCluster() as primary, PostgresCluster(standby_of=primary) as standby:
        yield primary, standby


async def replicated(standby: PostgresCluster, schema: str, count: int) -> int:
    conn = await asyncpg.connect(standby.url())
    try:
        exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.tasks")
        return int(await conn.fetchval(f"SELECT count(*) FROM {schema}.tasks")) if exists else 0
    finally:
        await conn.close()


@pytest.mark.timeout(120)
async def test_a_promoted_standby_takes_the_writes_of_a_multi_host_url(
    pair: tuple[PostgresCluster, PostgresCluster],
) -> None:
    primary, standby = pair
    figures = Figures("pg failover (kill primary, promote standby)", tasks=200)
    url = (
        f"postgresql://postgres@127.0.0.1:{primary.port},127.0.0.1:{standby.port}/postgres"
        "?target_session_attrs=read-write&connect_timeout=2"
    )
    store = PostgresStore(url, prefix="failover")
    store.timeout = 3.0
    await store.connect()
    try:
        before = [f"before-{i}" for i in range(100)]
        await store.write_many([Write(t, "work", TaskState.QUEUED, True) for t in before])
        await store.write_many([Write(t, "work", TaskState.STARTED) for t in before])
        await eventually(lambda: replicated(standby, store.schema, 100), lambda n: n == 100)

        await asyncio.to_thread(primary.stop, "immediate")
        killed = time.monotonic()
        figures.kills = 1
        with pytest.raises(StoreError):  # only a read-only standby is left: no write
            await store.transition(before[0], "work", TaskState.SUCCEEDED, result=1)
        await asyncio.to_thread(standby.promote)
        promoted = time.monotonic()

        async def first_write() -> bool:
            try:
                done = await store.transition(before[0], "work", TaskState.SUCCEEDED, result=1)
            except StoreError:
                return False
            return done is not None

        await eventually(first_write, bool, timeout=30, interval=0.1)
        figures.notes["kill_to_promoted_s"] = round(promoted - killed, 2)
        figures.notes["promoted_to_first_write_s"] = round(time.monotonic() - promoted, 2)
        after = [f"after-{i}" for i in range(100)]
        written = await store.write_many([Write(t, "work", TaskState.QUEUED, True) for t in after])
        assert all(s is not None for s in written)
        kept = [await store.get(t) for t in before]
        assert all(s is not None for s in kept)
        assert [s.state for s in kept if s is not None].count(TaskState.STARTED) == 99
        report(figures)
    finally:
        await store.close()
