"""One ``taskq bench`` run: its rounds, in order, and the cleanup whatever happens.

A round, on the run's fresh exchange:

1. raw baseline: publish ``tasks`` messages, consume them (:mod:`.raw`), with plain
   aio-pika on asyncio's own loop (:func:`raw_on_asyncio`);
2. enqueue sequentially, concurrently, in bulk (:mod:`.enqueue`); the queue is
   purged after each phase but the last, whose tasks stay for the drain;
3. start the workers and time the drain of those tasks (:mod:`.drain`);
4. with the workers still up, the latency at a light rate (:mod:`.latency`);
5. read the workers' peak RSS, stop them.

Nothing runs alongside a measured phase but what it measures: the workers run only
in 3 and 4, and the raw consumer is never running with them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskq.app import TaskQueue
from taskq.bench.cleanup import purge_tasks, remove_run
from taskq.bench.config import IN_FLIGHT, LATENCY_RATE, NOOP_TASK, BenchConfig
from taskq.bench.drain import drain
from taskq.bench.enqueue import enqueue_bulk, enqueue_concurrent, enqueue_sequential
from taskq.bench.latency import measure_latency
from taskq.bench.procs import Workers
from taskq.bench.raw import RawRates, measure_raw
from taskq.bench.report import Progress, Round, summary
from taskq.bench.tasks import build_app
from taskq.errors import TaskqError


async def run_bench(config: BenchConfig, progress: Progress) -> dict[str, Any]:
    """Every round, then :func:`~taskq.bench.report.summary` of them. Connection errors
    (:class:`BrokerConnectionError`, :class:`StoreError`) come first, before anything
    is declared; whatever was declared or written is removed on the way out."""
    app = build_app(
        broker=config.broker_url,
        store=config.store_url,
        exchange=config.exchange,
        queue_type="quorum",
        events=False,
    )
    try:
        await app.connect()  # the store, then the broker: an unreachable one raises here
    except BaseException:
        await app.close()  # nothing was declared or written yet
        raise
    progress.note(f"exchange {config.exchange} (deleted at the end, with its Redis keys)")
    try:
        rounds = []
        for number in range(1, config.rounds + 1):
            if config.rounds > 1:
                progress.note(f"round {number} of {config.rounds}")
            rounds.append(await run_round(config, app, progress))
    finally:
        try:
            await remove_run(config, app)
        except TaskqError as exc:
            progress.note(
                f"bench: cleaning up failed ({exc}); delete the queues and exchanges named "
                f"{config.exchange}* and the Redis keys {config.exchange}:* by hand"
            )
    return summary(config, rounds)


async def raw_on_asyncio(config: BenchConfig, count: int) -> RawRates:
    """The raw baseline as plain aio-pika runs in a user's program: on asyncio's own
    event loop (``asyncio.run``), in a thread of its own while this loop (uvloop, as
    ``taskq worker`` runs) waits. The baseline is the stack taskq starts from; uvloop is
    one of the things taskq brings to it (issue 5 measured its targets that way).
    If this run is interrupted, the thread's phase still finishes (it is bounded by the
    raw phase's stall timeout) before the cleanup deletes its queue."""
    running = asyncio.ensure_future(asyncio.to_thread(asyncio.run, measure_raw(config, count)))
    try:
        return await asyncio.shield(running)
    except asyncio.CancelledError:
        await asyncio.wait([running])
        raise


async def run_round(config: BenchConfig, app: TaskQueue, progress: Progress) -> Round:
    n = config.tasks
    task = app.tasks[NOOP_TASK]
    payload = config.payload

    progress.start(f"raw publish and consume {n:,}")
    raw = await raw_on_asyncio(config, n)
    progress.done(f"publish {raw.publish_per_s:,.0f}/s, consume {raw.consume_per_s:,.0f}/s")

    progress.start(f"enqueue sequential {config.sequential_tasks:,}")
    sequential = await enqueue_sequential(task, payload, config.sequential_tasks)
    progress.done(f"{sequential.per_s:,.0f}/s")
    await purge_tasks(config)

    progress.start(f"enqueue concurrent {n:,} ({IN_FLIGHT} in flight)")
    concurrent = await enqueue_concurrent(task, payload, n)
    progress.done(f"{concurrent.per_s:,.0f}/s")

    progress.start(f"enqueue bulk {n:,} (send_many)")
    await purge_tasks(config)
    bulk = await enqueue_bulk(task, payload, n)
    progress.done(f"{bulk.per_s:,.0f}/s")
    queued = bulk  # the last phase's tasks are the drain's

    workers = Workers(config)
    progress.start(f"drain {n:,} with {config.processes} x {config.concurrency}")
    try:
        await workers.start()
        drained = await drain(app, queued.ids, workers)
        cpu = (
            "" if drained.worker_cpu_us is None else f", {drained.worker_cpu_us:,.0f} us CPU a task"
        )
        progress.done(f"{drained.per_s:,.0f}/s{cpu}")
        progress.start(f"latency {config.latency_tasks} tasks at {LATENCY_RATE:g}/s")
        latency = await measure_latency(
            task, payload, config.latency_tasks, LATENCY_RATE, app.store, workers.check
        )
        progress.done(
            f"p50 start {latency.start.p50:.1f} ms, succeeded {latency.succeeded.p50:.1f} ms"
        )
        rss = workers.peak_rss_mib()
    finally:
        await workers.stop()
    return Round(
        raw=raw,
        enqueue_sequential=sequential.per_s,
        enqueue_concurrent=concurrent.per_s,
        enqueue_bulk=bulk.per_s,
        drain=drained.per_s,
        worker_cpu_us_per_task=drained.worker_cpu_us,
        latency=latency,
        worker_rss_mib=rss,
    )
