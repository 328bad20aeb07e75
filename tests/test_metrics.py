"""A worker's Prometheus metrics (taskq.metrics), scraped over HTTP from a real worker on
the embedded broker and on RabbitMQ + Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from taskq import Retry, TaskQueue, TaskState, Worker
from taskq.errors import StoreError
from taskq.metrics import MetricsServer, WorkerMetrics, serve
from tests.conftest import remove_app
from tests.helpers import eventually
from tests.test_amqp_broker import TcpProxy

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(server: MetricsServer) -> Samples:
    text = httpx.get(f"http://127.0.0.1:{server.port}/metrics", timeout=5).text
    return parse(text)


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


@pytest.fixture
def metrics() -> Iterator[tuple[WorkerMetrics, MetricsServer]]:
    kept = WorkerMetrics()
    server = serve(kept.registry, port=0)
    try:
        yield kept, server
    finally:
        server.close()


async def test_the_metrics_port_counts_each_outcome_per_task_name(
    app: TaskQueue, metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    kept, server = metrics
    tries: list[int] = []
    gate = asyncio.Event()

    @app.task(name="m.ok")
    async def ok(n: int) -> int:
        return n

    @app.task(name="m.boom", max_retries=0)
    async def boom() -> None:
        raise ValueError("boom")

    @app.task(name="m.flaky", max_retries=2)
    async def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise Retry(delay=0)
        return "ok"

    @app.task(name="m.slow")
    async def slow() -> None:
        await gate.wait()

    async with Worker(app, concurrency=8, metrics=kept):
        oks = [await ok.delay(n) for n in range(3)]
        failed = await boom.delay()
        retried = await flaky.delay()
        running = await slow.delay()
        assert [await h.result(timeout=20) for h in oks] == [0, 1, 2]
        assert await retried.result(timeout=20) == "ok"
        await eventually(failed.status, lambda s: s is not None and s.state is TaskState.FAILED)

        samples = await eventually(
            lambda: asyncio.to_thread(scrape, server),
            lambda s: value(s, "taskq_tasks_running", task="m.slow") == 1,
        )
        assert value(samples, "taskq_tasks_running", task="m.ok") == 0
        await app.cancel(running.id)  # an async task: interrupted
        await eventually(running.status, lambda s: s is not None and s.state.finished)

        samples = await eventually(
            lambda: asyncio.to_thread(scrape, server),
            lambda s: value(s, "taskq_tasks_total", task="m.boom", state="dead_lettered") == 1,
        )
    expected = {
        ("m.ok", "started"): 3,
        ("m.ok", "succeeded"): 3,
        ("m.boom", "started"): 1,
        ("m.boom", "failed"): 1,
        ("m.boom", "dead_lettered"): 1,
        ("m.flaky", "started"): 2,
        ("m.flaky", "retried"): 1,
        ("m.flaky", "succeeded"): 1,
        ("m.slow", "started"): 1,
        ("m.slow", "cancelled"): 1,
    }
    counted = {
        (dict(labels)["task"], dict(labels)["state"]): v
        for (name, labels), v in samples.items()
        if name == "taskq_tasks_total" and v
    }
    assert counted == expected
    assert value(samples, "taskq_task_duration_seconds_count", task="m.ok") == 3
    assert value(samples, "taskq_task_duration_seconds_count", task="m.flaky") == 2
    assert value(samples, "taskq_task_wait_seconds_count", task="m.ok") == 3  # first starts
    assert value(samples, "taskq_task_wait_seconds_count", task="m.flaky") == 1
    assert value(samples, "taskq_tasks_running", task="m.slow") == 0
    assert value(samples, "taskq_broker_reconnects_total") == 0
    assert value(samples, "taskq_store_errors_total") == 0

    # No label holds a task id or an argument: only task names and states.
    ids = {h.id for h in [*oks, failed, retried, running]}
    labels = {(k, v) for (_, pairs) in samples for k, v in pairs}
    assert {k for k, _ in labels} <= {"task", "state", "le"}
    assert not {v for _, v in labels} & ids


async def test_a_message_naming_an_unknown_task_adds_no_label(
    app: TaskQueue, metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    """The label is the task of the queue the message came from, never what a body says."""
    kept, server = metrics

    @app.task(name="m.known")
    async def known() -> None: ...

    async with Worker(app, metrics=kept):
        bogus = str(uuid.uuid4())
        body = f'{{"id": "{bogus}", "task": "m.{bogus}", "args": [], "kwargs": {{}}}}'
        await app.broker.publish(known.queue, body.encode(), task_id=bogus)
        samples = await eventually(
            lambda: asyncio.to_thread(scrape, server),
            lambda s: value(s, "taskq_tasks_total", task="m.known", state="dead_lettered") == 1,
        )
    assert value(samples, "taskq_tasks_total", task="m.known", state="failed") == 1
    assert not [labels for (_, labels) in samples if ("task", f"m.{bogus}") in labels]


async def test_store_errors_are_counted(exchange: str) -> None:
    kept = WorkerMetrics()
    app = TaskQueue(broker="memory://", store="redis://127.0.0.1:1/0", exchange=exchange)
    kept.watch(app)
    with pytest.raises(StoreError):
        await app.store.connect()
    assert kept.store_errors._value.get() >= 1


@pytest_asyncio.fixture
async def proxied_app(amqp_url: str, redis_url: str, exchange: str) -> AsyncIterator[Any]:
    proxy = TcpProxy(amqp_url)
    url = await proxy.start(reconnect_interval="0.2")
    app = TaskQueue(broker=url, store=redis_url, exchange=exchange, publish_timeout=5)
    try:
        yield app, proxy
    finally:
        try:
            await remove_app(app, list(app.tasks), redis_url)  # its records too
        finally:
            await proxy.close()


async def test_broker_reconnects_are_counted(
    proxied_app: Any, metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    app, proxy = proxied_app
    kept, server = metrics

    @app.task(name="m.after")
    async def after() -> str:
        return "ran"

    async with Worker(app, metrics=kept):
        proxy.drop()  # both connections, publishing and consuming
        await eventually(
            lambda: asyncio.to_thread(scrape, server),
            lambda s: value(s, "taskq_broker_reconnects_total") >= 2,
        )
        handle = await eventually(_send(after), lambda h: h is not None)
        assert await handle.result(timeout=20) == "ran"


def _send(task: Any) -> Any:
    async def attempt() -> Any:
        try:
            return await task.delay()
        except Exception:  # the publish racing the reconnect
            return None

    return attempt


async def test_broadcast_runs_are_counted_per_worker_like_any_task(
    app: TaskQueue, metrics: tuple[WorkerMetrics, MetricsServer]
) -> None:
    kept, server = metrics
    tries: list[int] = []

    @app.task(name="m.reload", broadcast=True, max_retries=1)
    async def reload() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise Retry(delay=0)
        return "reloaded"

    async with Worker(app, metrics=kept):
        handle = await reload.delay()
        outcomes = await handle.results(timeout=20, expected=1)
        assert [s.state for s in outcomes.values()] == [TaskState.SUCCEEDED]
        samples = await eventually(
            lambda: asyncio.to_thread(scrape, server),
            lambda s: value(s, "taskq_tasks_total", task="m.reload", state="succeeded") == 1,
        )
    assert value(samples, "taskq_tasks_total", task="m.reload", state="started") == 2
    assert value(samples, "taskq_tasks_total", task="m.reload", state="retried") == 1
    assert value(samples, "taskq_task_duration_seconds_count", task="m.reload") == 2
    assert value(samples, "taskq_tasks_running", task="m.reload") == 0


def test_the_worker_s_metrics_listen_on_127_0_0_1_unless_metrics_host_says_otherwise() -> None:
    from taskq.cli import build_parser

    parser = build_parser()
    default = parser.parse_args(["worker", "app:app", "--metrics-port", "9100"])
    assert (default.metrics_port, default.metrics_host) == (9100, "127.0.0.1")
    given = parser.parse_args(["worker", "app:app", "--metrics-port", "0", "--metrics-host", "::1"])
    assert given.metrics_host == "::1"

    kept = WorkerMetrics()
    local = serve(kept.registry, port=0)
    elsewhere = serve(kept.registry, port=0, host="127.0.0.2")  # another loopback address
    try:
        assert local.server.server_address[0] == "127.0.0.1"
        assert elsewhere.server.server_address[0] == "127.0.0.2"
        answered = httpx.get(f"http://127.0.0.2:{elsewhere.port}/metrics", timeout=5)
        assert "taskq_store_errors_total" in answered.text
        with pytest.raises(httpx.ConnectError):  # not on 127.0.0.1
            httpx.get(f"http://127.0.0.1:{elsewhere.port}/metrics", timeout=5)
    finally:
        local.close()
        elsewhere.close()
