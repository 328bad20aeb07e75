"""OpenTelemetry traces (taskq.tracing): the W3C trace context travels in the message
headers, so a task's run is a child of the span it was sent in, in this process, in
another one, and from one workflow step to the next. Spans are read from the SDK's
in-memory exporter (a worker subprocess prints its own with the console exporter)."""

from __future__ import annotations

import asyncio
import http.server
import json
import signal
import sys
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import taskq
from taskq import Retry, TaskQueue, TaskState, Worker
from taskq.brokers.amqp_publish import task_properties
from taskq.tracing import TRACE_HEADERS, instrument, trace_headers
from tests.deployment import ROOT
from tests.helpers import eventually
from tests.test_supervisor import client, env

__all__ = ["client", "env"]  # fixtures used here

Spans = tuple[TracerProvider, InMemorySpanExporter]


@pytest.fixture
def spans() -> Spans:
    """A provider of the test's own: the global one is never set in this process, so
    other tests' apps stay untraced."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name == name]


async def finished(exporter: InMemorySpanExporter, *names: str) -> list[ReadableSpan]:
    """The one finished span of each name (a process span ends just after the outcome
    is recorded, so it is waited for)."""
    await eventually(
        lambda: _now(exporter), lambda got: all(any(s.name == n for s in got) for n in names)
    )
    return [named(exporter, n)[0] for n in names]


async def _now(exporter: InMemorySpanExporter) -> Sequence[ReadableSpan]:
    return exporter.get_finished_spans()


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def test_a_task_sent_inside_a_span_runs_in_a_child_of_its_send_span(
    app: TaskQueue, spans: Spans
) -> None:
    provider, exporter = spans
    instrument(app, provider)

    @app.task(name="t.add")
    async def add(a: int, b: int) -> int:
        return a + b

    async with Worker(app):
        with provider.get_tracer("test").start_as_current_span("request") as request:
            handle = await add.delay(1, 2)
        assert await handle.result(timeout=20) == 3
        send, process = await finished(exporter, "send t.add", "process t.add")

    trace_id = request.get_span_context().trace_id
    assert send.context is not None and process.context is not None
    assert (send.kind, process.kind) == (SpanKind.PRODUCER, SpanKind.CONSUMER)
    assert parent_of(send) == request.get_span_context().span_id
    assert parent_of(process) == send.context.span_id
    assert send.context.trace_id == process.context.trace_id == trace_id
    assert send.attributes is not None and process.attributes is not None
    assert send.attributes["messaging.system"] == "rabbitmq"
    assert send.attributes["messaging.destination.name"] == app.topology.exchange
    assert send.attributes["taskq.task.id"] == handle.id
    assert process.attributes["messaging.system"] == "rabbitmq"
    assert process.attributes["messaging.operation.type"] == "process"
    assert process.attributes["messaging.destination.name"] == app.topology.exchange
    assert process.attributes["taskq.task.id"] == handle.id
    assert process.attributes["taskq.task.name"] == "t.add"
    assert process.attributes["messaging.message.id"]
    assert process.status.status_code is StatusCode.UNSET


async def test_a_failed_attempt_and_its_retry_are_children_of_the_same_send(
    app: TaskQueue, spans: Spans
) -> None:
    provider, exporter = spans
    instrument(app, provider)
    tries: list[int] = []

    @app.task(name="t.flaky", max_retries=1)
    async def flaky() -> str:
        tries.append(1)
        if len(tries) == 1:
            raise Retry(delay=0)
        return "ok"

    @app.task(name="t.boom", max_retries=0)
    async def boom() -> None:
        raise ValueError("no good")

    async with Worker(app):
        assert await (await flaky.delay()).result(timeout=20) == "ok"
        failed = await boom.delay()
        await eventually(failed.status, lambda s: s is not None and s.state is TaskState.FAILED)
        await eventually(
            lambda: _now(exporter), lambda _: len(named(exporter, "process t.flaky")) == 2
        )
        (dead,) = await finished(exporter, "process t.boom")

    (send,) = named(exporter, "send t.flaky")
    assert send.context is not None
    attempts = named(exporter, "process t.flaky")
    assert [parent_of(s) for s in attempts] == [send.context.span_id] * 2
    assert sorted(s.status.status_code.name for s in attempts) == ["ERROR", "UNSET"]
    assert dead.status.status_code is StatusCode.ERROR
    assert dead.attributes is not None and dead.attributes["taskq.settlement"] == "dead-letter"
    (event,) = [e for e in dead.events if e.name == "exception"]
    assert event.attributes is not None
    assert (event.attributes["exception.type"], event.attributes["exception.message"]) == (
        "ValueError",
        "no good",
    )


async def test_each_workflow_step_runs_in_a_child_of_the_step_before(
    app: TaskQueue, spans: Spans
) -> None:
    provider, exporter = spans
    instrument(app, provider)

    @app.task(name="t.price")
    async def price(item: str) -> int:
        return len(item)

    @app.task(name="t.times")
    async def times(value: int, by: int) -> int:
        return value * by

    async with Worker(app):
        with provider.get_tracer("test").start_as_current_span("request") as request:
            flow = await taskq.chain(price.s("apple"), times.s(10)).delay()
        assert await flow.result(timeout=20) == 50
        first_send, first, second_send, second = await finished(
            exporter, "send t.price", "process t.price", "send t.times", "process t.times"
        )

    chain = [request.get_span_context().span_id]
    for span in (first_send, first, second_send, second):
        assert span.context is not None
        assert parent_of(span) == chain[-1], span.name
        assert span.context.trace_id == request.get_span_context().trace_id
        chain.append(span.context.span_id)


async def test_with_no_tracer_provider_set_nothing_is_traced_and_no_header_is_sent(
    app: TaskQueue,
) -> None:
    assert app.tracing is None  # connected by the fixture, with no provider set
    received: list[Any] = []

    @app.task(name="t.plain")
    async def plain() -> None: ...

    async def keep(delivery: Any) -> None:
        received.append(delivery)
        await delivery.ack()

    consumer = await app.broker.consume([plain.queue], keep, prefetch=1)
    try:
        await plain.delay()
        await eventually(lambda: _value(received), lambda got: len(got) == 1)
    finally:
        await consumer.close()
    assert not set(received[0].headers) & set(TRACE_HEADERS)
    assert task_properties("id").headers is None  # the frame of a task message as before


async def _value(items: list[Any]) -> list[Any]:
    return items


def test_a_retry_carries_the_trace_context_it_came_with_and_nothing_else() -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    came = {"traceparent": parent, "tracestate": b"k=v", "x-death": [], "other": "x"}
    assert trace_headers(came) == {"traceparent": parent, "tracestate": "k=v"}
    assert trace_headers({"x-death": []}) is None
    assert trace_headers({"traceparent": 7}) is None  # bad input: ignored, never an error


async def test_a_worker_process_with_otel_runs_the_task_in_a_child_of_the_sender_s_span(
    client: TaskQueue, env: dict[str, str], spans: Spans, tmp_path: Path
) -> None:
    provider, exporter = spans
    instrument(client, provider)
    out = tmp_path / "spans.json"
    worker_env = {**env, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "worker"}
    with out.open("wb") as stdout, (tmp_path / "worker.log").open("wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "taskq", "worker", "tests.supervisor_app:app", "--otel",
            "--log-format", "json", cwd=ROOT, env=worker_env, stdout=stdout, stderr=stderr,
        )  # fmt: skip
    try:
        with provider.get_tracer("test").start_as_current_span("request"):
            handle = await client.send("sup.touch", args=[uuid.uuid4().hex, 0])
        await handle.result(timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0
    (send,) = named(exporter, "send sup.touch")
    assert send.context is not None

    printed = _json_objects(out.read_text())
    (process,) = [s for s in printed if s["name"] == "process sup.touch"]
    assert process["kind"] == "SpanKind.CONSUMER"
    assert process["context"]["trace_id"] == f"0x{send.context.trace_id:032x}"
    assert process["parent_id"] == f"0x{send.context.span_id:016x}"
    assert process["attributes"]["taskq.task.id"] == handle.id
    assert process["resource"]["attributes"]["service.name"] == "worker"


class _OtlpReceiver(http.server.BaseHTTPRequestHandler):
    """A collector's OTLP/HTTP traces endpoint: keeps what it is sent."""

    bodies: list[tuple[str, str, bytes]]

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        self.bodies.append((self.path, self.headers.get("Content-Type", ""), body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


async def test_taskq_otel_from_the_environment_exports_over_otlp_with_no_otel_variable_set(
    client: TaskQueue, env: dict[str, str], tmp_path: Path
) -> None:
    """``TASKQ_OTEL=1`` as the flag's twin, and ``OTEL_TRACES_EXPORTER`` unset: its
    default, otlp, is served by the OTLP/HTTP exporter ``taskq[otel]`` installs."""
    bodies: list[tuple[str, str, bytes]] = []
    handler = type("Receiver", (_OtlpReceiver,), {"bodies": bodies})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    worker_env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    worker_env |= {
        "TASKQ_OTEL": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}",
    }
    try:
        with (tmp_path / "worker.log").open("wb") as stderr:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "taskq", "worker", "tests.supervisor_app:app",
                cwd=ROOT, env=worker_env, stdout=stderr, stderr=stderr,
            )  # fmt: skip
        try:
            handle = await client.send("sup.touch", args=[uuid.uuid4().hex, 0])
            await handle.result(timeout=30)
        finally:
            proc.send_signal(signal.SIGTERM)  # the SDK's batch is flushed at the stop
            assert await asyncio.wait_for(proc.wait(), 30) == 0, (
                tmp_path / "worker.log"
            ).read_text()
    finally:
        server.shutdown()
        server.server_close()
    sent = [body for path, kind, body in bodies if path == "/v1/traces"]
    assert sent and all(kind == "application/x-protobuf" for _, kind, _ in bodies)
    assert any(b"process sup.touch" in body and handle.id.encode() in body for body in sent)


def _json_objects(text: str) -> list[dict[str, Any]]:
    """The JSON objects the console exporter printed one after another."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while True:
        while at < len(text) and text[at].isspace():
            at += 1
        if at >= len(text):
            return found
        obj, at = decoder.raw_decode(text, at)
        found.append(obj)
