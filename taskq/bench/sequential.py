"""One confirmed send at a time, as a web view sends: taskq's ``delay()`` beside plain
aio-pika's publish, on asyncio's own loop and on uvloop.

Each loop gets the same number of sends (:attr:`BenchConfig.sequential_tasks`), timed
one by one: the rate, and the median time of one send, which is what a request pays.
On uvloop they run in the bench's own loop (:func:`taskq.loops.run`); on asyncio's
own loop in a thread of their own (:func:`on_asyncio`), taskq with an app of its own
made there (an app's connections belong to the loop that opened them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

import aio_pika

from taskq.bench.config import NOOP_TASK, BenchConfig
from taskq.bench.enqueue import Enqueued, enqueue_sequential
from taskq.bench.raw import declare_raw, publish_raw, raw_body
from taskq.bench.tasks import build_app
from taskq.bench.timing import p50_ms, per_second
from taskq.brokers.amqp_errors import amqp_errors
from taskq.brokers.amqp_options import connect_options
from taskq.urls import split_urls

T = TypeVar("T")


@dataclass(frozen=True)
class Sequential:
    per_s: float
    p50_ms: float | None


async def on_asyncio(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """``make()`` run to the end on asyncio's own event loop (``asyncio.run``), in a
    thread of its own while this loop waits. If this one is cancelled, the thread's
    coroutine still finishes (each phase is bounded by its timeouts) before the
    cancellation goes on: the cleanup must not delete what it still uses."""
    running = asyncio.ensure_future(asyncio.to_thread(lambda: asyncio.run(make())))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


async def raw_sequential(config: BenchConfig, count: int) -> Sequential:
    """``count`` raw publishes (:func:`~taskq.bench.raw.publish_raw`), each awaited
    before the next; the raw queue is purged afterwards."""
    body = raw_body(config)
    url = split_urls(config.broker_url)[0]  # plain aio-pika: the first node of a list
    with amqp_errors(url):
        connection = await aio_pika.connect(url, timeout=10, **connect_options(url, None))
    try:
        with amqp_errors(url, publishing=True):
            channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
            exchange, queue = await declare_raw(channel, config)
            took: list[float] = []
            started = time.perf_counter()
            for _ in range(count):
                before = time.perf_counter()
                await publish_raw(exchange, body)
                took.append(time.perf_counter() - before)
            seconds = time.perf_counter() - started
            await queue.purge()
    finally:
        await connection.close()
    return Sequential(per_second(count, seconds), p50_ms(took))


async def taskq_sequential(config: BenchConfig, count: int) -> Enqueued:
    """``count`` ``delay()`` calls one after the other, from an app of their own (for a
    loop other than the bench's); the caller purges the task queue."""
    app = build_app(
        broker=config.broker_url,
        store=config.store_url,
        exchange=config.exchange,
        queue_type="quorum",
        events=False,
    )
    try:
        await app.connect()
        return await enqueue_sequential(app.tasks[NOOP_TASK], config.payload, count)
    finally:
        await app.close()
