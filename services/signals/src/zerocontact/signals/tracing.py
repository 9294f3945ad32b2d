"""The trace of each record through the signals worker (docs/observability.md).

Every agent handles a record inside :func:`process_span` (the platform's ``<topic> process``
span, consumer group = the Faust app id), the child of the span whose ``traceparent`` the record
carries. What the worker writes continues it: a record forwarded to the next stage of a pipeline
carries the process span's ``traceparent`` (:func:`continued`: the next stage's process span is
its child, no span of its own), and an output record (risk assessment or alert, engagement
signal) gets a ``<topic> publish`` span, child of the process span, ended when the broker
acknowledged it, whose ``traceparent`` it carries beside its CloudEvents headers
(:func:`publish`), so the consumer of the output (loan, marketing) continues the same trace.

Per record: one span and one header scan; per output, one more span. With tracing off
(``OTEL_SDK_DISABLED``) the spans are the API's no-op ones, which pass the incoming context on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from contextlib import AbstractContextManager
from typing import Any

from opentelemetry.trace import Span

from zerocontact.platform.telemetry import consume_span, current_traceparent, publish_span

__all__ = ["continued", "process_span", "publish"]

Headers = list[tuple[str, bytes]]


def _pairs(headers: Any) -> Iterable[tuple[str, bytes]]:
    if not headers:
        return ()
    pairs: Iterable[tuple[str, bytes]] = (
        headers.items() if isinstance(headers, Mapping) else headers
    )
    return pairs


def process_span(event: Any, group: str) -> AbstractContextManager[Span]:
    """The active ``<topic> process`` span of one Faust event, continuing its ``traceparent``."""
    message = event.message
    ce_id = ce_type = ""
    traceparent: str | None = None
    for name, value in _pairs(message.headers):
        if name == "traceparent":
            traceparent = value.decode("ascii", "replace")
        elif name == "ce_id":
            ce_id = value.decode("utf-8", "replace")
        elif name == "ce_type":
            ce_type = value.decode("utf-8", "replace")
    return consume_span(
        message.topic,
        group=group,
        partition=message.partition,
        offset=message.offset,
        event_id=ce_id,
        event_type=ce_type,
        traceparent=traceparent,
    )


def _with_traceparent(headers: Iterable[tuple[str, bytes]], traceparent: str | None) -> Headers:
    kept = [(name, value) for name, value in headers if name != "traceparent"]
    if traceparent:
        kept.append(("traceparent", traceparent.encode()))
    return kept


def continued(headers: Iterable[tuple[str, bytes]]) -> Headers:
    """``headers`` with the active span's ``traceparent`` (the incoming one without a span)."""
    traceparent = current_traceparent()
    if traceparent is None:
        return list(headers)
    return _with_traceparent(headers, traceparent)


async def publish(channel: Any, *, key: Any, value: bytes, headers: Headers) -> None:
    """Send an output record in its ``<topic> publish`` span (child of the active span)."""
    ce_id = ce_type = ""
    for name, raw in headers:
        if name == "ce_id":
            ce_id = raw.decode()
        elif name == "ce_type":
            ce_type = raw.decode()
    topic = next(iter(channel.topics))
    span, traceparent = publish_span(topic, event_id=ce_id, event_type=ce_type, traceparent=None)

    def acknowledged(_: Any) -> None:  # Faust calls it once the broker has the record
        span.end()

    try:
        await channel.send(
            key=key,
            value=value,
            headers=_with_traceparent(headers, traceparent) if traceparent else headers,
            callback=acknowledged,
        )
    except BaseException as exc:
        span.record_exception(exc)
        span.end()
        raise
