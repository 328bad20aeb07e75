"""asyncpg against psycopg 3 (async, with its pool) on the PostgreSQL store's hot
operations: how the driver of taskq.stores.postgres was chosen (issue 15).

    .venv/bin/pip install "psycopg[binary,pool]"   # not a dependency of taskq
    .venv/bin/python -m tests.pg_driver_bench [postgresql://postgres@127.0.0.1:5432/test]

Each driver runs the store's own SQL (taskq.stores.postgres_schema) in a schema of its
own, dropped after: a batch of 100 ``started`` moves then 100 ``succeeded`` moves (the
worker's write_many), a single ``queued`` create, and a get; both with prepared
statements (direct to PostgreSQL) and without (what PgBouncer's transaction mode
needs). Not a test: prints a table, asserts nothing. The medians are mostly the server's time
(the same SQL for both), so they move with the machine's load from one run to the
next; the client CPU is what a driver costs the process that uses it.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import psycopg
from psycopg_pool import AsyncConnectionPool

from taskq.stores.postgres_schema import LATEST, migration_sql

URL = sys.argv[1] if len(sys.argv) > 1 else "postgresql://postgres@127.0.0.1:5432/test"
BATCH = 100
ROUNDS = 40
SINGLES = 2000

WRITE_MANY = "SELECT * FROM {s}.write_many({p1}, {p2}, {p3}, {p4}, {p5}, {p6}, {p7}, {p8})"
WRITE = "SELECT * FROM {s}.write({p1}, {p2}, {p3}, {p4}, {p5}, {p6}, {p7}, {p8})"
GET = "SELECT * FROM {s}.tasks WHERE id = {p1}"


def _sql(template: str, schema: str, style: str) -> str:
    marks = {f"p{i}": (f"${i}" if style == "asyncpg" else "%s") for i in range(1, 9)}
    return template.format(s=schema, **marks)


def _batch(state: str, ids: list[str]) -> list[Any]:
    n = len(ids)
    result = ["[1]"] * n if state == "succeeded" else [None] * n
    return [ids, ["t"] * n, [state] * n, [False] * n, result, [None] * n, [None] * n, 3600.0]


async def _timed(label: str, runs: int, call: Callable[[int], Awaitable[Any]]) -> str:
    await call(-1)  # warm up (plans, prepared statements)
    laps = []
    cpu = time.process_time()
    for i in range(runs):
        start = time.perf_counter()
        await call(i)
        laps.append(time.perf_counter() - start)
    # The client's own CPU (this process): what a worker spends, whatever the server does.
    client = (time.process_time() - cpu) / runs
    return (
        f"{label:>34}: median {statistics.median(laps) * 1e6:8.0f} us,"
        f" client CPU {client * 1e6:6.0f} us"
    )


async def _run(name: str, execute: Callable[[str, list[Any]], Awaitable[Any]], style: str) -> None:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    await execute(f"CREATE SCHEMA {schema}", [])
    try:
        await execute(migration_sql(0, schema), [])
        assert LATEST == 1
        rows: list[str] = []

        async def batch(i: int) -> None:
            ids = [f"b{i}-{k}" for k in range(BATCH)]
            await execute(_sql(WRITE_MANY, schema, style), _batch("started", ids))
            await execute(_sql(WRITE_MANY, schema, style), _batch("succeeded", ids))

        async def create(i: int) -> None:
            args = [f"c{i}", "t", "queued", True, None, None, '{"args":[],"kwargs":{}}', 3600.0]
            await execute(_sql(WRITE, schema, style), args)

        async def get(i: int) -> None:
            await execute(_sql(GET, schema, style), [f"c{max(i, 0)}"])

        rows.append(await _timed(f"write_many 2x{BATCH} (per task)", ROUNDS, batch))
        rows.append(await _timed("create queued", SINGLES, create))
        rows.append(await _timed("get", SINGLES, get))
        print(f"{name}:")
        for row in rows:
            print(row)
    finally:
        await execute(f"DROP SCHEMA {schema} CASCADE", [])


async def _no_reset(conn: Any) -> None:
    pass


async def main() -> None:
    for cache in (100, 0):
        # As the store makes its pool: no reset query at each release (no session state).
        pool = await asyncpg.create_pool(
            URL, min_size=1, max_size=2, statement_cache_size=cache, reset=_no_reset
        )

        async def on_asyncpg(sql: str, args: list[Any], pool: Any = pool) -> Any:
            async with pool.acquire() as conn:
                if not args:
                    return await conn.execute(sql)
                return await conn.fetch(sql, *args)

        await _run(f"asyncpg {asyncpg.__version__}, statement cache {cache}", on_asyncpg, "asyncpg")
        await pool.close()
    for threshold in (0, None):

        async def configure(conn: psycopg.AsyncConnection[Any], t: int | None = threshold) -> None:
            conn.prepare_threshold = t
            await conn.set_autocommit(True)

        ppool = AsyncConnectionPool(URL, min_size=1, max_size=2, configure=configure, open=False)
        await ppool.open()

        async def on_psycopg(sql: str, args: list[Any], ppool: Any = ppool) -> Any:
            async with ppool.connection() as conn:
                if not args:  # DDL: several statements, never prepared
                    return await conn.execute(sql, prepare=False)
                cursor = await conn.execute(sql, args)
                return await cursor.fetchall() if cursor.description else None

        label = "prepared" if threshold == 0 else "not prepared"
        await _run(f"psycopg {psycopg.__version__}, {label}", on_psycopg, "psycopg")
        await ppool.close()


if __name__ == "__main__":
    asyncio.run(main())
