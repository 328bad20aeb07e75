"""``taskq bench`` as a user runs it: a subprocess against the real broker and Redis.

Its JSON carries every figure of the contract, positive, with the flags echoed in
``settings``; afterwards nothing of its exchange is left on the broker or in Redis,
also when it was interrupted. No speed is asserted: machines are noisy.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import aiormq.exceptions
import redis.asyncio as aioredis

from taskq.bench.config import RAW_TASK, BenchConfig
from taskq.bench.raw import measure_raw
from taskq.brokers.amqp import AmqpBroker
from taskq.cli import RET_CONNECT, RET_INTERRUPTED
from taskq.topology import Topology
from tests.broker_nodes import closed_port
from tests.deployment import ROOT, Ran, environment, run_python

#: Every figure the contract names, as dotted paths into the JSON object.
RATES = [
    "raw.publish_per_s",
    "raw.consume_per_s",
    "raw.publish_sequential_per_s",
    "raw.publish_sequential_p50_ms",
    "raw.publish_sequential_per_s_uvloop",
    "raw.publish_sequential_p50_ms_uvloop",
    "taskq.enqueue_sequential_per_s",
    "taskq.sequential_p50_ms",
    "taskq.enqueue_sequential_per_s_asyncio",
    "taskq.sequential_p50_ms_asyncio",
    "taskq.enqueue_concurrent_per_s",
    "taskq.enqueue_bulk_per_s",
    "taskq.drain_per_s",
    "taskq.worker_rss_mib",
    "taskq.tree_pss_mib",
    "ceiling.drain_per_s",
    "ratios.enqueue_sequential",
    "ratios.enqueue_concurrent",
    "ratios.enqueue_bulk",
    "ratios.drain",
    "ratios.drain_vs_ceiling",
    "ratios.enqueue_sequential_vs_raw",
    "ratios.sequential_p50_vs_raw_asyncio",
    "ratios.sequential_p50_vs_raw_uvloop",
    "ratios.latency_start_p50_vs_raw_deliver",
]
#: Counted in clock ticks over the tasks started once every process consumed: in a
#: run this small, possibly none (a second process may start after the drain).
CPU_PER_TASK = ["taskq.worker_cpu_us_per_task", "ceiling.cpu_us_per_task"]
LATENCIES = ["taskq.latency_start_ms", "taskq.latency_succeeded_ms", "raw.latency_deliver_ms"]
SETTINGS = [
    "broker", "store", "exchange", "tasks", "processes", "concurrency", "payload_bytes",
    "prefetch", "queue_type", "loop", "raw_loop", "python", "taskq",
]  # fmt: skip


def at(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for key in path.split("."):
        assert isinstance(value, dict) and key in value, f"{path} missing from {result}"
        value = value[key]
    return value


#: Seconds a small run may take on a busy machine: it starts a pool of workers, then
#: the ceiling's processes, and runs a dozen phases.
BENCH_TIMEOUT = 120.0


async def bench(amqp_url: str, redis_url: str, *flags: str) -> Ran:
    return await run_python(
        "-m", "taskq", "bench", "--broker", amqp_url, "--store", redis_url, *flags,
        env=environment(), timeout=BENCH_TIMEOUT,
    )  # fmt: skip


async def assert_nothing_left(amqp_url: str, redis_url: str, exchange: str) -> None:
    """No queue, no exchange and no Redis key of the run's exchange."""
    queues = [f"{exchange}.bench.noop", f"{exchange}.bench.raw", f"{exchange}.dead"]
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for name in queues:
            channel = await connection.channel()  # a 404 closes it
            try:
                await channel.declare_queue(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
            raise AssertionError(f"queue {name} left behind")
        for name in (exchange, f"{exchange}.dead", f"{exchange}.delay.0"):
            channel = await connection.channel()
            try:
                await channel.declare_exchange(name, passive=True)
            except aiormq.exceptions.ChannelNotFoundEntity:
                continue
            raise AssertionError(f"exchange {name} left behind")
    client = aioredis.from_url(redis_url)
    try:
        assert [key async for key in client.scan_iter(match=f"{exchange}*")] == []
    finally:
        await client.aclose()


def assert_complete(result: dict[str, Any]) -> None:
    for path in RATES:
        value = at(result, path)
        assert isinstance(value, int | float) and value > 0, (path, value)
    for path in CPU_PER_TASK:
        cpu = at(result, path)
        assert cpu is None or (isinstance(cpu, int | float) and cpu >= 0), (path, cpu)
    assert at(result, "ceiling.absent") is None
    for path in LATENCIES:
        p50, p95, p99 = (at(result, f"{path}.{p}") for p in ("p50", "p95", "p99"))
        assert 0 < p50 <= p95 <= p99, (path, p50, p95, p99)
    for key in SETTINGS:
        at(result, f"settings.{key}")


async def test_bench_reports_every_figure_echoes_its_flags_and_leaves_nothing_behind(
    amqp_url: str, redis_url: str
) -> None:
    # One run for both (a bench run is ~10 s of the suite): two worker processes, every
    # flag given, and a list of nodes (the second one down), as `--broker` accepts:
    # every phase, the plain ones (raw, one at a time, the ceiling's consumers) on the
    # first URL. The defaults are checked by the table's run below.
    other = urlsplit(amqp_url)._replace(netloc=f"guest:s3cret-n0de@127.0.0.1:{closed_port()}")
    ran = await bench(
        f"{amqp_url};{urlunsplit(other)}", redis_url,
        "--tasks", "300", "--processes", "2", "--concurrency", "20", "--payload-bytes", "50",
        "--json",
    )  # fmt: skip

    assert ran.returncode == 0, ran.stderr
    result = json.loads(ran.stdout)
    assert_complete(result)
    settings = result["settings"]
    assert settings["tasks"] == 300
    assert (settings["processes"], settings["concurrency"], settings["prefetch"]) == (2, 20, 20)
    assert settings["payload_bytes"] == 50
    assert settings["queue_type"] == "quorum"
    assert settings["exchange"].startswith("taskq-bench-")
    assert "s3cret-n0de" not in ran.stdout + ran.stderr
    if "@" in amqp_url and ":" in amqp_url.split("@")[0].split("//")[1]:
        assert "***" in settings["broker"]
    # Progress goes to stderr, one line per phase.
    assert "raw publish and consume 300... publish" in ran.stderr
    assert "drain 300 with 2 x 20..." in ran.stderr
    assert "ceiling: drain 300 with 2 x plain aiormq + Redis..." in ran.stderr
    await assert_nothing_left(amqp_url, redis_url, settings["exchange"])


async def test_bench_prints_a_table_without_json(amqp_url: str, redis_url: str) -> None:
    ran = await bench(amqp_url, redis_url, "--tasks", "20")

    assert ran.returncode == 0, ran.stderr
    # The defaults: one worker process of concurrency and prefetch 100.
    assert "drain 20 with 1 x 100..." in ran.stderr
    assert "ceiling: drain 20 with 1 x plain aiormq + Redis..." in ran.stderr
    for row in (
        "raw publish", "one at a time", "ceiling drain", "enqueue, sequential", "drain vs ceiling",
        "taskq delay()", "publish -> started", "RSS", "PSS of the worker's process tree",
    ):  # fmt: skip
        assert row in ran.stdout


async def test_the_plain_aio_pika_baseline_takes_the_first_of_a_list_of_nodes(
    amqp_url: str, redis_url: str
) -> None:
    """``--broker`` with several URLs: taskq's side connects to the first node that
    answers (as any app), the plain aio-pika baseline to the first URL."""
    other = urlsplit(amqp_url)._replace(netloc=f"guest:s3cret-n0de@127.0.0.1:{closed_port()}")
    config = BenchConfig(broker_url=f"{amqp_url};{urlunsplit(other)}", store_url=redis_url)
    try:
        rates = await measure_raw(config, 50)
        assert rates.publish_per_s > 0 and rates.consume_per_s > 0
    finally:
        cleaner = AmqpBroker(config.broker_url, Topology(config.exchange))
        await cleaner.destroy([RAW_TASK])
    await assert_nothing_left(amqp_url, redis_url, config.exchange)


async def test_an_unreachable_broker_is_one_line_and_exit_3(redis_url: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    ran = await bench(f"amqp://guest:secret@127.0.0.1:{port}/", redis_url, "--tasks", "10")

    assert ran.returncode == RET_CONNECT
    assert ran.stdout == ""
    assert len(ran.stderr.splitlines()) == 1, ran.stderr
    assert ran.stderr.startswith("taskq: error:") and "secret" not in ran.stderr


async def test_an_interrupted_bench_stops_its_workers_and_cleans_up(
    amqp_url: str, redis_url: str
) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "taskq", "bench", "--broker", amqp_url, "--store", redis_url,
        "--tasks", "500", "--json",
        cwd=ROOT, env=environment(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    async with asyncio.timeout(30):
        while b"drain" not in seen:  # the workers are starting
            line = await proc.stderr.read(100)
            assert line, seen
            seen += line
        proc.send_signal(signal.SIGINT)
        out, err = await proc.communicate()

    assert proc.returncode == RET_INTERRUPTED, seen + err
    assert out == b""
    exchange = re.search(rb"taskq-bench-[0-9a-f]+", seen)
    assert exchange is not None, seen
    await assert_nothing_left(amqp_url, redis_url, exchange.group().decode())
