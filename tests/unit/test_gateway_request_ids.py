"""Request ids and SERVER spans of the gateway: the RequestInfo a refusal carries beside its
other details, the id a call gets with and without tracing, and the server interceptor (a
partner's trace continued, the status of a refusal recorded, no message or metadata kept)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc  # type: ignore[import-untyped]
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from zerocontact.gateway.errors import REQUEST_ID_HEADER, GatewayError, invalid_fields, request_info
from zerocontact.gateway.tracing import ServerSpans, request_id

HEX32 = re.compile(r"^[0-9a-f]{32}$")
PARTNER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{PARTNER_TRACE}-00f067aa0ba902b7-01"


def _unpacked(details: list[any_pb2.Any]) -> dict[str, Any]:
    kinds = (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
        error_details_pb2.RequestInfo,
    )
    out: dict[str, Any] = {}
    for packed in details:
        for kind in kinds:
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                out[kind.__name__] = message
    return out


def test_request_info_is_the_request_id_and_a_short_serving_note() -> None:
    info = request_info("ab" * 16, "LoanService/ApplyForLoan")
    assert info.request_id == "ab" * 16
    assert info.serving_data == "LoanService/ApplyForLoan"


def test_a_refusal_carries_request_info_beside_its_details_and_the_id_in_its_trailers() -> None:
    rid = "0123456789abcdef" * 2
    error = invalid_fields([("party_id", "not a UUID")])
    error.retry_after_s = 0.5
    status = error.status(rid, serving_data="LoanService/ApplyForLoan")
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT
    trailers = dict(status.trailing_metadata)
    assert trailers[REQUEST_ID_HEADER] == rid
    rich = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    found = _unpacked(list(rich.details))
    assert set(found) == {"ErrorInfo", "BadRequest", "RetryInfo", "RequestInfo"}
    assert found["RequestInfo"].request_id == rid
    assert found["RequestInfo"].serving_data == "LoanService/ApplyForLoan"
    assert found["ErrorInfo"].reason == "INVALID_REQUEST"
    # without a request id the status is as before: no RequestInfo, no extra trailer
    plain = error.status()
    assert [k for k, _ in plain.trailing_metadata] == ["grpc-status-details-bin"]


def test_the_request_id_is_the_trace_id_or_random_without_a_span() -> None:
    first, second = request_id(), request_id()
    assert HEX32.match(first) and HEX32.match(second) and first != second
    provider = TracerProvider()
    with provider.get_tracer("t").start_as_current_span("call") as span:
        assert request_id() == format(span.get_span_context().trace_id, "032x")


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


async def _ok(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b"ok:" + request


async def _refuse(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    error = GatewayError(grpc.StatusCode.PERMISSION_DENIED, "MISSING_SCOPE", "no scope 13800138000")
    await context.abort_with_status(error.status(request_id(), serving_data="T/Refuse"))
    raise AssertionError("unreachable")


async def _fail(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
    raise AssertionError("unreachable")


async def _generated(
    request: bytes, context: grpc.aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    for i in range(2):
        yield b"%d" % i


async def _written(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    for i in range(2):
        await context.write(b"w%d" % i)


async def test_server_spans_continue_the_partner_trace_and_record_how_calls_ended(
    spans: InMemorySpanExporter,
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    server = grpc.aio.server(interceptors=[ServerSpans(provider)])

    def ident(b: bytes) -> bytes:  # the (de)serializers: bytes as they are
        return b

    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "t.T",
                {
                    "Ok": grpc.unary_unary_rpc_method_handler(_ok, ident, ident),
                    "Refuse": grpc.unary_unary_rpc_method_handler(_refuse, ident, ident),
                    "Fail": grpc.unary_unary_rpc_method_handler(_fail, ident, ident),
                    "Gen": grpc.unary_stream_rpc_method_handler(_generated, ident, ident),
                    "Write": grpc.unary_stream_rpc_method_handler(_written, ident, ident),
                },
            ),
        )
    )
    probes = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(probes, server)
    await probes.set("", health_pb2.HealthCheckResponse.SERVING)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            md = (("traceparent", TRACEPARENT), ("x-partner-credential", "secret-value"))
            assert (
                await channel.unary_unary("/t.T/Ok")(b"13800138000", metadata=md)
                == b"ok:13800138000"
            )
            # the second call goes through the handler wrapped once
            assert await channel.unary_unary("/t.T/Ok")(b"again") == b"ok:again"
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await channel.unary_unary("/t.T/Refuse")(b"x", metadata=md)
            assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
            trailers = dict(refused.value.trailing_metadata() or ())
            assert trailers[REQUEST_ID_HEADER] == PARTNER_TRACE  # the partner's trace, continued
            with pytest.raises(grpc.aio.AioRpcError):
                await channel.unary_unary("/t.T/Fail")(b"x")
            assert [m async for m in channel.unary_stream("/t.T/Gen")(b"x")] == [b"0", b"1"]
            assert [m async for m in channel.unary_stream("/t.T/Write")(b"x")] == [b"w0", b"w1"]
            # health (a handler writing with context.write) is not traced and still works
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(), timeout=5
            )
            assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
            watch.cancel()
    finally:
        await server.stop(0)

    by_name: dict[str, list[Any]] = {}
    for span in spans.get_finished_spans():
        by_name.setdefault(span.name, []).append(span)
    assert set(by_name) == {"t.T/Ok", "t.T/Refuse", "t.T/Fail", "t.T/Gen", "t.T/Write"}
    continued, fresh = by_name["t.T/Ok"]
    assert continued.kind == SpanKind.SERVER
    assert format(continued.context.trace_id, "032x") == PARTNER_TRACE
    assert continued.parent is not None and continued.parent.is_remote
    assert format(fresh.context.trace_id, "032x") != PARTNER_TRACE and fresh.parent is None
    assert continued.attributes == {
        "rpc.system": "grpc",
        "rpc.service": "t.T",
        "rpc.method": "Ok",
        "rpc.grpc.status_code": 0,
    }  # no message, no metadata value
    [refusal] = by_name["t.T/Refuse"]
    assert refusal.attributes["rpc.grpc.status_code"] == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert refusal.status.status_code == StatusCode.UNSET  # the partner's refusal, not a fault
    assert not refusal.events  # an abort is no exception to record
    [failure] = by_name["t.T/Fail"]
    assert failure.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INTERNAL.value[0]
    assert failure.status.status_code == StatusCode.ERROR
    for name in ("t.T/Gen", "t.T/Write"):
        assert by_name[name][0].attributes["rpc.grpc.status_code"] == 0
    texts = repr(
        [(s.attributes, s.events, s.status.description) for s in spans.get_finished_spans()]
    )
    assert "13800138000" not in texts and "secret-value" not in texts
