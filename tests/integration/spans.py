"""The spans this test process finishes (the services under test run in it), and the parts of
a W3C ``traceparent``: for tests that follow a trace across HTTP, the outbox and Kafka."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@contextmanager
def recorded_spans() -> Iterator[InMemorySpanExporter]:
    """Record every span finished inside the block (the services' tracing must be on)."""
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "service_app configures the tracer provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        yield exporter
    finally:
        exporter.shutdown()  # the processor stays (the SDK cannot remove one) but keeps nothing


def trace_id(traceparent: str | bytes) -> str:
    """The trace id (hex) of a ``traceparent``."""
    value = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return value.split("-")[1]


def span_id(traceparent: str | bytes) -> str:
    """The parent span id (hex) of a ``traceparent``."""
    value = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    return value.split("-")[2]


def hex_trace(span: trace.Span | ReadableSpan) -> str:
    """A span's trace id in hex."""
    return format(span.get_span_context().trace_id, "032x")
