"""OpenTelemetry tracing for every process: one tracer provider, W3C trace context, Kafka hops.

:func:`configure_tracing` installs the process's tracer provider (parent-based ratio sampling,
OTLP/gRPC export when an endpoint is set) and the maintained instrumentations for PyMongo and
the httpx client; :func:`instrument_app` adds the FastAPI server spans. The Kafka hops are ours:
an event captures the span context it was written in (:func:`current_traceparent`, stored with
the outbox entry), the publisher's ``<topic> publish`` span is its child and travels in the
record's ``traceparent`` header, and a consumer's ``<topic> process`` span continues it
(:func:`consume_span`). Work deferred beyond the request or record that caused it (a queue, a
batch run, a recovery sweep) stores :func:`current_traceparent` with what it defers and runs
later in a :func:`deferred_span`, so it joins the trace that caused it. The aiokafka instrumentation is not used: its send wrapper would inject
the relay's context instead of the request's that wrote the outbox entry, and its receive span
ends before our handler runs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes

__all__ = [
    "RequestRootedSampler",
    "configure_tracing",
    "consume_span",
    "context_of",
    "current_ids",
    "current_traceparent",
    "deferred_span",
    "instrument_app",
    "publish_span",
    "shutdown_tracing",
    "tracer",
]

log = logging.getLogger(__name__)

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_EXCLUDED_URLS: Final = "healthz,readyz,metrics"
_state: dict[str, object] = {}


class RequestRootedSampler(Sampler):
    """Parent-based ratio sampling that never starts a trace from a client span.

    A database command or an outgoing call made outside any request or consumed event is a
    periodic job's tick (outbox sweeps, lease renewals, schedulers): a trace per idle tick
    would cost CPU at rest and bury the traces that matter. Work a job actually does runs in
    its own span (or continues a stored context), and its client calls are children of that.
    """

    def __init__(self, ratio: float) -> None:
        self._inner = ParentBased(TraceIdRatioBased(ratio))

    def should_sample(
        self,
        parent_context: otel_context.Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Drop a root client span; otherwise the parent's decision or the ratio."""
        if kind is SpanKind.CLIENT and not (
            trace.get_current_span(parent_context).get_span_context().is_valid
        ):
            return SamplingResult(Decision.DROP)
        return self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        """How it samples, for the SDK's diagnostics."""
        inner: str = self._inner.get_description()  # type: ignore[no-untyped-call]
        return f"RequestRooted{{{inner}}}"


def configure_tracing(
    service: str,
    *,
    enabled: bool = True,
    sample_ratio: float = 1.0,
    endpoint: str | None = None,
) -> TracerProvider | None:
    """Install this process's tracer provider and the client instrumentations, once.

    ``enabled=False`` leaves the API's no-op provider in place: no spans are made, and an
    incoming trace context still passes through to the events written. Without ``endpoint``
    spans are made (trace ids in logs and gateway responses) but not exported. A second call in
    the same process (several services in one test process) keeps the first provider.
    """
    if not enabled:
        return None
    existing = _state.get("provider")
    if isinstance(existing, TracerProvider):
        return existing
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "service.namespace": "zerocontact"}),
        sampler=RequestRootedSampler(sample_ratio),
    )
    if endpoint:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
            )
        )
    trace.set_tracer_provider(provider)
    _state["provider"] = provider
    _instrument_clients()
    return provider


def _instrument_clients() -> None:
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.pymongo import PymongoInstrumentor

    # Command spans without their arguments: filters and documents hold personal data.
    PymongoInstrumentor().instrument(capture_statement=False)
    HTTPXClientInstrumentor().instrument()


def instrument_app(app: object) -> None:
    """Server spans for a FastAPI app (probes and ``/metrics`` excluded); no-op when off."""
    if "provider" not in _state:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # One server span per request: the ASGI ``http send``/``http receive`` spans (three more
    # per request) say nothing a trace reader needs and cost CPU on every call.
    FastAPIInstrumentor.instrument_app(
        app,  # type: ignore[arg-type]
        excluded_urls=_EXCLUDED_URLS,
        exclude_spans=["receive", "send"],
    )


def shutdown_tracing() -> None:
    """Export what is buffered (at process exit)."""
    provider = _state.get("provider")
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=5_000)


def tracer() -> trace.Tracer:
    """The tracer of the platform's own spans (one per tracer provider: consumers ask for it
    per record, and ``get_tracer`` builds a new one each time)."""
    provider = trace.get_tracer_provider()
    cached = _state.get("tracer")
    if not (isinstance(cached, tuple) and cached[0] is provider):
        cached = _state["tracer"] = (provider, provider.get_tracer("zerocontact.platform"))
    return cached[1]  # type: ignore[no-any-return]


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the active span, to store with an event written now."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get("traceparent")


def context_of(traceparent: str | None) -> otel_context.Context:
    """The context a stored or received ``traceparent`` continues (empty if absent or bad)."""
    if not traceparent:
        return otel_context.Context()
    return _PROPAGATOR.extract({"traceparent": traceparent})


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the active span, for log lines and request ids."""
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


def _traceparent_of(span: Span) -> str | None:
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


def publish_span(
    topic: str, *, event_id: str, event_type: str, traceparent: str | None
) -> tuple[Span, str | None]:
    """Start the ``<topic> publish`` span of one event, child of the context it was written in.

    Returns the span (the caller ends it once the broker acknowledged) and the ``traceparent``
    to send in the record's headers: the publish span's own, so the consumer is its child. An
    event without a stored context continues the active span (a direct publish).
    """
    parent = context_of(traceparent) if traceparent else None
    span = tracer().start_span(
        f"{topic} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.message.id": event_id,
            "cloudevents.event_type": event_type,
        },
    )
    sent = _traceparent_of(span) if span.get_span_context().is_valid else traceparent
    return span, sent


@contextmanager
def consume_span(
    topic: str,
    *,
    group: str,
    partition: int,
    offset: int,
    event_id: str,
    event_type: str,
    headers: Mapping[str, str] | None = None,
    traceparent: str | None = None,
) -> Iterator[Span]:
    """The active ``<topic> process`` span of one consumed event, child of its publish span."""
    if traceparent is None and headers is not None:
        traceparent = headers.get("traceparent")
    with tracer().start_as_current_span(
        f"{topic} process",
        context=context_of(traceparent),
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": topic,
            "messaging.consumer.group.name": group,
            "messaging.destination.partition.id": str(partition),
            "messaging.kafka.offset": offset,
            "messaging.message.id": event_id,
            "cloudevents.event_type": event_type,
        },
    ) as span:
        yield span


@contextmanager
def deferred_span(
    name: str,
    *,
    traceparent: str | None,
    links: Iterable[str | None] = (),
    attributes: Attributes = None,
) -> Iterator[Span]:
    """The active span of work deferred from a stored context: a child of ``traceparent``.

    What the work writes (events, PyMongo commands) joins the trace that queued it. ``links``
    are other stored contexts the same work serves (a batch of queued items); the span active
    when the work resumes (a retried request, or the request that started a background run)
    is linked too, when it belongs to another trace, and while it is still open it links
    back, so the resuming request's trace (the request id a partner quotes) leads to the work.
    Without a stored context the work continues the active span, as undeferred work would.
    """
    resuming = trace.get_current_span()
    current = resuming.get_span_context()
    parent = context_of(traceparent) if traceparent else None
    parent_trace = trace.get_current_span(parent).get_span_context().trace_id if parent else None
    related = [trace.get_current_span(context_of(t)).get_span_context() for t in links if t]
    if parent is not None and current.is_valid and current.trace_id != parent_trace:
        related.append(current)
    with tracer().start_as_current_span(
        name,
        context=parent,
        links=[Link(c) for c in related if c.is_valid],
        attributes=attributes,
    ) as span:
        if current in related and resuming.is_recording():
            resuming.add_link(span.get_span_context())
        yield span
