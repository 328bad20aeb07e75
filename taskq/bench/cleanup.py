"""Leaving the broker and the store (Redis or PostgreSQL) as the run found them.

Everything a run creates is named after its exchange (``taskq-bench-<random>``):
the task and raw queues, the dead letters, any delay level (``AmqpBroker.destroy``)
and the status records, whose Redis keys start with ``<exchange>:`` (PostgreSQL: the
schema named after the exchange, dropped).
"""

from __future__ import annotations

import aio_pika
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from taskq.app import TaskQueue
from taskq.bench.config import NOOP_TASK, RAW_TASK, BenchConfig
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.amqp_options import connect_options
from taskq.errors import StoreError
from taskq.topology import Topology
from taskq.urls import mask_url, scheme_of, split_urls


async def purge_tasks(config: BenchConfig) -> None:
    """Empty the no-op task's queue: a phase's messages must not reach the drain."""
    url = split_urls(config.broker_url)[0]  # plain aio-pika: the first node of a list
    with amqp_errors(url):
        connection = await aio_pika.connect(url, timeout=10, **connect_options(url, None))
        async with connection:
            channel = await connection.channel()
            queue = await channel.get_queue(Topology(config.exchange).queue_name(NOOP_TASK))
            await queue.purge()


async def delete_keys(store_url: str, prefix: str) -> int:
    """Delete every Redis key under ``prefix:``; how many."""
    client = aioredis.from_url(store_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
        return len(keys)
    except RedisError as exc:
        raise StoreError(f"bench: cleaning Redis at {mask_url(store_url)} failed: {exc}") from exc
    finally:
        await client.aclose()


async def drop_schema(store_url: str, schema: str) -> None:
    """Drop the PostgreSQL store's schema of the run, with every record in it."""
    import asyncpg

    from taskq.stores.postgres_connection import driver_options
    from taskq.stores.postgres_schema import quote

    dsn, timeout = driver_options(store_url)
    try:
        conn = await asyncpg.connect(dsn, timeout=timeout, statement_cache_size=0)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote(schema)} CASCADE")
        finally:
            await conn.close()
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise StoreError(
            f"bench: cleaning PostgreSQL at {mask_url(store_url)} failed: {exc}"
        ) from exc


async def delete_records(store_url: str, exchange: str) -> None:
    """The run's status records: its Redis keys, or its PostgreSQL schema."""
    if scheme_of(store_url) in ("postgresql", "postgres"):
        from taskq.stores.postgres_schema import schema_name

        await drop_schema(store_url, schema_name(exchange))
    else:
        await delete_keys(store_url, exchange)


async def remove_run(config: BenchConfig, app: TaskQueue) -> None:
    """Delete the run's queues, exchanges and records; closes ``app``."""
    try:
        await app.broker.destroy([NOOP_TASK, RAW_TASK])
    finally:
        try:
            await app.close()
        finally:
            await delete_records(config.store_url, config.exchange)
