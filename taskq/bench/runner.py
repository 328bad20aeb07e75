"""One ``taskq bench`` run: its rounds, in order, and the cleanup whatever happens.

A round, on the run's fresh exchange:

1. raw baseline: publish ``tasks`` messages, consume them (:mod:`.raw`), with plain
   aio-pika on asyncio's own loop;
2. one send at a time (:mod:`.sequential`): taskq's ``delay()`` on the bench's loop
   and on asyncio's own, plain aio-pika's publish on asyncio's own and on uvloop;
3. enqueue concurrently, in bulk (:mod:`.enqueue`); the queue is purged after each
   phase but the last, whose tasks stay for the drain;
4. start the workers and time the drain of those tasks (:mod:`.drain`);
5. with the workers still up, the latency at a light rate (:mod:`.latency`);
6. read the workers' peak RSS and their tree's PSS (after 4 and 5), stop them;
7. the ceiling (:mod:`.ceiling`): ``tasks`` more tasks queued, drained by plain
   aiormq consumers that only do the I/O; with a Redis store only.

Nothing runs alongside a measured phase but what it measures: the workers run only
in 4 and 5, the ceiling's consumers only in 7, and the raw consumer never with them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from taskq.app import TaskQueue
from taskq.bench.ceiling import CeilingConsumers, absent_reason
from taskq.bench.cleanup import purge_tasks, remove_run
from taskq.bench.config import IN_FLIGHT, LATENCY_RATE, NOOP_TASK, BenchConfig
from taskq.bench.drain import Drained, drain
from taskq.bench.enqueue import enqueue_bulk, enqueue_concurrent, enqueue_sequential
from taskq.bench.latency import measure_latency
from taskq.bench.procs import Workers
from taskq.bench.raw import measure_raw, measure_raw_latency
from taskq.bench.report import Progress, Round, SequentialFigures, summary
from taskq.bench.sequential import Sequential, on_asyncio, raw_sequential, taskq_sequential
from taskq.bench.tasks import build_app
from taskq.errors import TaskqError
from taskq.loops import raise_if_cancel_requested
from taskq.stores.redis import RedisStore
from taskq.task import Task


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
        raise_if_cancel_requested()  # asked to stop during the last phase: no report
    finally:
        try:
            await remove_run(config, app)
        except TaskqError as exc:
            progress.note(
                f"bench: cleaning up failed ({exc}); delete the queues and exchanges named "
                f"{config.exchange}* and the Redis keys {config.exchange}:* by hand"
            )
    return summary(config, rounds)


def on_uvloop() -> bool:
    """Whether the running loop is uvloop's (the bench's, when uvloop is installed)."""
    return type(asyncio.get_running_loop()).__module__.startswith("uvloop")


async def run_round(config: BenchConfig, app: TaskQueue, progress: Progress) -> Round:
    n = config.tasks
    task = app.tasks[NOOP_TASK]
    payload = config.payload

    _begin(progress, f"raw publish and consume {n:,}")
    # Plain aio-pika as it runs in a user's program, on asyncio's own loop: the stack
    # taskq starts from; uvloop is one of the things taskq brings to it (issue 5).
    raw = await on_asyncio(lambda: measure_raw(config, n))
    progress.done(f"publish {raw.publish_per_s:,.0f}/s, consume {raw.consume_per_s:,.0f}/s")

    sequential = await one_at_a_time(config, task, progress)

    _begin(progress, f"enqueue concurrent {n:,} ({IN_FLIGHT} in flight)")
    concurrent = await enqueue_concurrent(task, payload, n)
    progress.done(f"{concurrent.per_s:,.0f}/s")

    _begin(progress, f"enqueue bulk {n:,} (send_many)")
    await purge_tasks(config)
    bulk = await enqueue_bulk(task, payload, n)
    progress.done(f"{bulk.per_s:,.0f}/s")
    queued = bulk  # the last phase's tasks are the drain's

    workers = Workers(config)
    _begin(progress, f"drain {n:,} with {config.processes} x {config.concurrency}")
    try:
        await workers.start()
        drained = await drain(app, queued.ids, workers)
        pss = [workers.tree_pss_mib()]
        progress.done(_drained(drained))
        _begin(progress, f"latency {config.latency_tasks} tasks at {LATENCY_RATE:g}/s")
        latency = await measure_latency(
            task, payload, config.latency_tasks, LATENCY_RATE, app.store, workers.check
        )
        progress.done(
            f"p50 start {latency.start.p50:.1f} ms, succeeded {latency.succeeded.p50:.1f} ms"
        )
        rss = workers.peak_rss_mib()
        pss.append(workers.tree_pss_mib())
        # Its floor, with the workers up and idle as they were for taskq's.
        _begin(progress, f"raw publish -> delivered, {config.latency_tasks} at {LATENCY_RATE:g}/s")
        raw_latency = await measure_raw_latency(config, config.latency_tasks, LATENCY_RATE)
        progress.done(f"p50 {raw_latency.p50:.1f} ms")
    finally:
        await workers.stop()
    known = [size for size in pss if size is not None]

    ceiling, absent = None, absent_reason(config)
    if absent is None:
        ceiling = await measure_ceiling(config, app, progress)
    else:
        progress.note(f"no ceiling: {absent}")
    return Round(
        raw=raw,
        sequential=sequential,
        enqueue_concurrent=concurrent.per_s,
        enqueue_bulk=bulk.per_s,
        drain=drained,
        latency=latency,
        raw_latency=raw_latency,
        worker_rss_mib=rss,
        tree_pss_mib=max(known) if known else None,
        ceiling=ceiling,
        ceiling_absent=absent,
    )


async def one_at_a_time(
    config: BenchConfig, task: Task[Any, Any], progress: Progress
) -> SequentialFigures:
    """taskq's ``delay()`` and raw publishes one at a time, on each loop; the queues
    are purged after each."""
    count = config.sequential_tasks
    _begin(progress, f"enqueue sequential {count:,}")
    uvloop = await enqueue_sequential(task, config.payload, count)
    await purge_tasks(config)
    progress.done(f"{uvloop.per_s:,.0f}/s, p50 {uvloop.p50_ms} ms")

    _begin(progress, f"enqueue sequential {count:,} on asyncio's loop")
    own = await on_asyncio(lambda: taskq_sequential(config, count))
    await purge_tasks(config)
    progress.done(f"{own.per_s:,.0f}/s, p50 {own.p50_ms} ms")

    _begin(progress, f"raw publish one at a time {count:,} on asyncio's loop")
    raw = await on_asyncio(lambda: raw_sequential(config, count))
    progress.done(f"{raw.per_s:,.0f}/s, p50 {raw.p50_ms} ms")
    raw_uvloop = None
    if on_uvloop():
        _begin(progress, f"raw publish one at a time {count:,} on uvloop")
        raw_uvloop = await raw_sequential(config, count)
        progress.done(f"{raw_uvloop.per_s:,.0f}/s, p50 {raw_uvloop.p50_ms} ms")
    return SequentialFigures(
        taskq=Sequential(uvloop.per_s, uvloop.p50_ms),
        taskq_asyncio=Sequential(own.per_s, own.p50_ms),
        raw=raw,
        raw_uvloop=raw_uvloop,
    )


async def measure_ceiling(config: BenchConfig, app: TaskQueue, progress: Progress) -> Drained:
    """``tasks`` more no-op tasks queued (untimed), drained by the ceiling's consumers."""
    n = config.tasks
    _begin(progress, f"ceiling: drain {n:,} with {config.processes} x plain aiormq + Redis")
    queued = await enqueue_bulk(app.tasks[NOOP_TASK], config.payload, n)
    store = app.store
    assert isinstance(store, RedisStore)  # absent_reason() said so
    consumers = CeilingConsumers(config, prefix=store.prefix, ttl=store.ttl)
    try:
        await consumers.start()
        drained = await drain(app, queued.ids, consumers)
    finally:
        await consumers.stop()
    progress.done(_drained(drained))
    return drained


def _drained(drained: Drained) -> str:
    cpu = "" if drained.worker_cpu_us is None else f", {drained.worker_cpu_us:,.0f} us CPU a task"
    return f"{drained.per_s:,.0f}/s{cpu}"


def _begin(progress: Progress, label: str) -> None:
    """Start a phase's line, unless the run was asked to stop: a Ctrl-C that the phase
    before swallowed (:func:`taskq.loops.raise_if_cancel_requested`) ends it here."""
    raise_if_cancel_requested()
    progress.start(label)
