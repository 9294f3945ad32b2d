"""The platform's trace context: events keep the context they were written in, a publish span
continues it, and a consumer's process span is the publish span's child; logs carry the ids."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from zerocontact.platform.logging import configure_logging
from zerocontact.platform.outbox import protobuf_event
from zerocontact.platform.telemetry import (
    configure_tracing,
    consume_span,
    current_ids,
    current_traceparent,
    deferred_span,
    publish_span,
)
from zerocontact.skeleton.v1 import events_pb2


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    provider = configure_tracing("unit", sample_ratio=1.0)
    assert provider is not None
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter


def _wrapper() -> events_pb2.SkeletonEvent:
    wrapper = events_pb2.SkeletonEvent()
    wrapper.account_opened.account_id = "acc-1"
    return wrapper


def test_an_event_carries_the_context_it_was_written_in(spans: InMemorySpanExporter) -> None:
    with trace.get_tracer("test").start_as_current_span("POST /v1/accounts") as request:
        event = protobuf_event(_wrapper(), topic="t", key="k", source="test").event
    assert event.traceparent is not None
    trace_hex = format(request.get_span_context().trace_id, "032x")
    span_hex = format(request.get_span_context().span_id, "016x")
    assert event.traceparent.startswith(f"00-{trace_hex}-{span_hex}-")


def test_publish_and_process_spans_are_parent_linked(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with trace.get_tracer("test").start_as_current_span("request"):
        stored = current_traceparent()
    publish, sent = publish_span(
        "loan.events.v1", event_id="e1", event_type="T", traceparent=stored
    )
    publish.end()
    with consume_span(
        "loan.events.v1",
        group="g",
        partition=0,
        offset=7,
        event_id="e1",
        event_type="T",
        traceparent=sent,
    ):
        inner = current_traceparent()
    by_name = {s.name: s for s in spans.get_finished_spans()}
    request, pub, proc = (
        by_name["request"],
        by_name["loan.events.v1 publish"],
        by_name["loan.events.v1 process"],
    )
    assert pub.parent is not None and pub.parent.span_id == request.context.span_id
    assert proc.parent is not None and proc.parent.span_id == pub.context.span_id
    assert proc.context.trace_id == request.context.trace_id
    assert pub.kind is trace.SpanKind.PRODUCER and proc.kind is trace.SpanKind.CONSUMER
    # what the handler writes inside the process span continues the same trace
    assert inner is not None and inner.split("-")[1] == format(request.context.trace_id, "032x")


def test_a_record_without_context_starts_its_own_trace(spans: InMemorySpanExporter) -> None:
    spans.clear()
    with (
        trace.get_tracer("test").start_as_current_span("unrelated"),
        consume_span(
            "t", group="g", partition=0, offset=0, event_id="e", event_type="T", traceparent=None
        ) as span,
    ):
        assert span.parent is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("bad", ["garbage", "00-" + "0" * 32 + "-" + "1" * 16 + "-01"])
def test_a_malformed_stored_context_starts_a_new_trace(
    spans: InMemorySpanExporter, bad: str
) -> None:
    with consume_span(
        "t", group="g", partition=0, offset=0, event_id="e", event_type="T", traceparent=bad
    ) as span:
        assert span.parent is None  # type: ignore[attr-defined]
        assert span.get_span_context().is_valid


def test_deferred_work_continues_the_stored_context(spans: InMemorySpanExporter) -> None:
    spans.clear()
    test = trace.get_tracer("test")
    with test.start_as_current_span("POST /v1/batches") as submit:
        stored = current_traceparent()  # kept with what is deferred (a batch, a queued leaf)
    # later, maybe in another process, started by another request
    with (
        test.start_as_current_span("POST /v1/batches/b/approval") as approve,
        deferred_span("payroll.batch.run", traceparent=stored) as run,
    ):
        written = current_traceparent()
    run_ = next(s for s in spans.get_finished_spans() if s.name == "payroll.batch.run")
    assert run_.parent is not None and run_.parent.span_id == submit.get_span_context().span_id
    assert run.get_span_context().trace_id == submit.get_span_context().trace_id
    # the request that resumed it is linked, and what the work writes continues the trace
    assert [link.context.span_id for link in run_.links] == [approve.get_span_context().span_id]
    approve_ = next(s for s in spans.get_finished_spans() if s.name.endswith("/approval"))
    assert [link.context.span_id for link in approve_.links] == [run.get_span_context().span_id]
    assert written is not None
    assert written.split("-")[1] == format(submit.get_span_context().trace_id, "032x")


def test_deferred_work_serving_several_contexts_links_the_others(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    test = trace.get_tracer("test")
    stored = []
    for n in range(3):
        with test.start_as_current_span(f"sign {n}"):
            stored.append(current_traceparent())
    with deferred_span("trust.log.sequence", traceparent=stored[0], links=stored[1:]):
        pass
    (sequence,) = [s for s in spans.get_finished_spans() if s.name == "trust.log.sequence"]
    assert sequence.parent is not None
    assert format(sequence.context.trace_id, "032x") == stored[0].split("-")[1]  # type: ignore[union-attr]
    assert [format(link.context.trace_id, "032x") for link in sequence.links] == [
        t.split("-")[1] for t in stored[1:] if t
    ]


def test_deferred_work_without_a_stored_context_continues_the_active_span(
    spans: InMemorySpanExporter,
) -> None:
    with (
        trace.get_tracer("test").start_as_current_span("job") as job,
        deferred_span("work", traceparent=None) as work,
    ):
        pass
    assert work.parent is not None  # type: ignore[attr-defined]
    assert work.parent.span_id == job.get_span_context().span_id  # type: ignore[attr-defined]
    assert not work.links  # type: ignore[attr-defined]


def test_log_lines_inside_a_span_carry_its_ids(spans: InMemorySpanExporter) -> None:
    out = io.StringIO()
    configure_logging("unit", stream=out)
    with trace.get_tracer("test").start_as_current_span("work"):
        ids = current_ids()
        logging.getLogger("unit").info("card 6222021234567890123 paid")
    logging.getLogger("unit").info("outside")
    inside, outside = (json.loads(line) for line in out.getvalue().splitlines())
    assert ids is not None
    assert (inside["trace_id"], inside["span_id"]) == ids
    assert "6222021234567890123" not in inside["message"]
    assert "trace_id" not in outside


def test_no_trace_starts_from_a_client_span_outside_any_request(
    spans: InMemorySpanExporter,
) -> None:
    spans.clear()
    work = trace.get_tracer("test")
    # a periodic job's database command at rest: nothing recorded
    with work.start_as_current_span("find", kind=trace.SpanKind.CLIENT) as idle:
        assert not idle.is_recording()
    # the same command inside a request is part of its trace
    with (
        work.start_as_current_span("GET /v1/loans/{loan_id}", kind=trace.SpanKind.SERVER),
        work.start_as_current_span("find", kind=trace.SpanKind.CLIENT) as inside,
    ):
        assert inside.is_recording()
    assert [s.name for s in spans.get_finished_spans()] == ["find", "GET /v1/loans/{loan_id}"]
