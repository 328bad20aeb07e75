"""OpenTelemetry traces of task calls (the extra ``taskq[otel]``).

A call sent inside a span carries that span's W3C trace context in its message headers
(``traceparent`` and ``tracestate``), so the task's run, in whatever process, is part of
the same trace; so are the steps of a workflow, each sent from inside the run of the
step before it. Spans follow OpenTelemetry's messaging conventions:

- ``send <task>`` (PRODUCER), around a send: the ``queued`` record and the publish
  (one span for a ``send_many`` batch, whose messages all carry it);
- ``process <task>`` (CONSUMER), around a worker's handling of a delivery, a child of
  the context the message carried (a new trace when it carried none); its status is
  ERROR when the attempt failed, with the error as an ``exception`` event;
- attributes ``messaging.system=rabbitmq``, ``messaging.operation.type``,
  ``messaging.destination.name`` (the app's exchange),
  ``messaging.rabbitmq.destination.routing_key`` (the task name), and on the consumer
  side ``messaging.message.id``; the task's id as ``messaging.message.conversation_id``
  and ``taskq.task.id``, its name as ``taskq.task.name``.

Off unless OpenTelemetry is imported and a tracer provider is set when the app
connects (:func:`detect_tracing`): the application's own provider is used. Off, the
app holds ``tracing = None`` and a send or a run pays one ``is None`` test; nothing
here imports ``opentelemetry`` until then. :func:`instrument` turns it on explicitly
(with a provider of its own, for instance); ``taskq worker --otel`` (or
``TASKQ_OTEL=1``) sets the SDK up from the standard ``OTEL_*`` variables
(:func:`setup_sdk`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from taskq.observe import RunCall, RunObserver
from taskq.settle import Settlement
from taskq.status import TaskState

if TYPE_CHECKING:
    from opentelemetry.trace import TracerProvider

    from taskq.app import TaskQueue
    from taskq.brokers.base import Delivery
    from taskq.settle import Outcome
    from taskq.status import ErrorInfo, TaskStatus

#: The message headers that carry a trace context (W3C Trace Context).
TRACE_HEADERS = ("traceparent", "tracestate")
#: Set to 1 (or true) to have ``taskq worker`` set up the SDK, as ``--otel`` does.
OTEL_ENV = "TASKQ_OTEL"


def trace_headers(headers: Mapping[str, Any]) -> dict[str, str] | None:
    """The trace context a delivery came with, to publish its retry with (so every
    attempt belongs to the trace it was sent in); ``None`` when it came with none.
    Needs no OpenTelemetry: a context passes through untraced workers too."""
    if "traceparent" not in headers:
        return None
    carried = {}
    for name in TRACE_HEADERS:
        value = headers.get(name)
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        if isinstance(value, str):
            carried[name] = value
    return carried or None


def detect_tracing(exchange: str) -> Tracing | None:
    """Traces for an app of ``exchange``, if the application set a tracer provider;
    else ``None``. Imports nothing: an application that set a provider has imported
    OpenTelemetry already."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return None
    return Tracing(exchange, provider)


def instrument(app: TaskQueue, tracer_provider: TracerProvider | None = None) -> Tracing:
    """Trace ``app``'s sends and runs with ``tracer_provider`` (default: the global
    one), whether or not one was set when it connected. Call it before a worker of the
    app starts."""
    app.tracing = Tracing(app.topology.exchange, tracer_provider)
    return app.tracing


#: The entry point name of ``opentelemetry-exporter-otlp-proto-http``'s span exporter.
HTTP_OTLP = "otlp_proto_http"


def setup_sdk() -> None:
    """Set the OpenTelemetry SDK up as the global tracer provider, from the standard
    ``OTEL_*`` variables (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
    ``OTEL_TRACES_EXPORTER``: ``otlp`` by default, ``console``, or ``none``), as
    ``opentelemetry-instrument`` does. For ``taskq worker --otel``. ``otlp`` is the
    exporter registered under that name (the grpc one, from
    ``opentelemetry-exporter-otlp``) if installed, else OTLP over HTTP, which
    ``taskq[otel]`` installs so that ``--otel`` works with no variable set."""
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    provider = TracerProvider(resource=Resource.create())  # reads the OTEL_* resource vars
    for name in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(","):
        name = name.strip()
        if name in ("", "none"):
            continue
        if name == "console":
            provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
            continue
        from opentelemetry.util._importlib_metadata import entry_points

        found = list(entry_points(group="opentelemetry_traces_exporter", name=name))
        if not found and name == "otlp":  # `otlp` is grpc's name; taskq[otel] brings http's
            found = list(entry_points(group="opentelemetry_traces_exporter", name=HTTP_OTLP))
        if not found:
            from taskq.errors import ConfigurationError

            raise ConfigurationError(
                f"OTEL_TRACES_EXPORTER={name!r}: no such exporter is installed "
                "(otlp needs opentelemetry-exporter-otlp)"
            )
        provider.add_span_processor(BatchSpanProcessor(found[0].load()()))
    trace.set_tracer_provider(provider)


def otel_requested() -> bool:
    return os.environ.get(OTEL_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def shutdown_sdk() -> None:
    """Flush and stop the SDK's provider (spans still batched are exported)."""
    from opentelemetry import trace

    shutdown = getattr(trace.get_tracer_provider(), "shutdown", None)
    if callable(shutdown):
        shutdown()


class Tracing(RunObserver):
    """An app's tracer, its producer spans (:meth:`sending`) and consumer spans
    (:meth:`run`, the :class:`~taskq.observe.RunObserver` of its workers)."""

    def __init__(self, exchange: str, tracer_provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from taskq import __version__

        self.exchange = exchange
        self._trace = trace
        self.tracer = trace.get_tracer("taskq", __version__, tracer_provider=tracer_provider)
        # W3C Trace Context only, whatever the global propagators: the headers are part
        # of the wire format, the same for every sender.
        self.propagator = TraceContextTextMapPropagator()

    @contextmanager
    def sending(self, task: str, task_ids: Sequence[str]) -> Iterator[dict[str, str]]:
        """A ``send <task>`` span, current while the block runs; yields the headers that
        carry it, for every message of the send."""
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": self.exchange,
            "messaging.rabbitmq.destination.routing_key": task,
            "taskq.task.name": task,
        }
        if len(task_ids) == 1:
            attributes["messaging.message.conversation_id"] = task_ids[0]
            attributes["taskq.task.id"] = task_ids[0]
        else:
            attributes["messaging.batch.message_count"] = len(task_ids)
        with self.tracer.start_as_current_span(
            f"send {task}", kind=self._trace.SpanKind.PRODUCER, attributes=attributes
        ):
            headers: dict[str, str] = {}
            self.propagator.inject(headers)
            yield headers

    async def run(self, delivery: Delivery, call: RunCall) -> tuple[Outcome, Any]:
        parent = self.propagator.extract(_carried(delivery.headers))
        attributes: dict[str, Any] = {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": self.exchange,
            "messaging.rabbitmq.destination.routing_key": delivery.routing_key,
            "taskq.task.name": delivery.task,
            "taskq.queue": delivery.queue,
        }
        if delivery.message_id:
            attributes["messaging.message.id"] = delivery.message_id
        if delivery.correlation_id:
            attributes["messaging.message.conversation_id"] = delivery.correlation_id
            attributes["taskq.task.id"] = delivery.correlation_id
        with self.tracer.start_as_current_span(
            f"process {delivery.task}",
            context=parent,
            kind=self._trace.SpanKind.CONSUMER,
            attributes=attributes,
        ) as span:
            outcome, log = await call(delivery)
            span.set_attribute("taskq.settlement", outcome.settlement.value)
            if outcome.settlement is Settlement.DEAD_LETTER:
                span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, outcome.reason))
            return outcome, log

    def recorded(
        self, state: TaskState, record: TaskStatus | None, error: ErrorInfo | None
    ) -> None:
        if record is None:
            return
        span = self._trace.get_current_span()
        if record.state is TaskState.STARTED:
            span.set_attribute("taskq.task.id", record.id)
            span.set_attribute("taskq.attempt", record.attempts)
            return
        span.set_attribute("taskq.state", record.state.value)
        if error is not None and record.state in (TaskState.FAILED, TaskState.RETRYING):
            span.add_event(
                "exception",
                {
                    "exception.type": error.type,
                    "exception.message": error.message,
                    "exception.stacktrace": error.traceback or "",
                },
            )
            span.set_status(
                self._trace.Status(self._trace.StatusCode.ERROR, f"{error.type}: {error.message}")
            )


def _carried(headers: Mapping[str, Any]) -> dict[str, str]:
    """The trace headers as the propagator reads them (str values only: AMQP may hand
    them as bytes; anything else is ignored, never an error)."""
    return trace_headers(headers) or {}
