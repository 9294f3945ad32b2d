"""Request ids for partners, end to end: every gateway response carries the call's trace id in
``x-request-id`` (trailers; a stream's initial metadata too), every refusal carries it in
``google.rpc.RequestInfo`` beside its other details, and a partner's ``traceparent`` is
continued through the gateway into the service behind it.

The services run in this process (they install its tracer provider); the spans are read from
that provider with an in-memory exporter.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from typing import Any

import grpc
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from google.rpc import error_details_pb2
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from pymongo import AsyncMongoClient

from tests.integration.harness import Engines, eventually
from tests.integration.test_gateway_support import ALL_SCOPES, Suite, start_suite
from zerocontact.gateway.v1 import loan_pb2, signals_pb2
from zerocontact.partner_client import cny, error_details, request_id_of

pytestmark = pytest.mark.asyncio(loop_scope="session")
HEX32 = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
async def suite(
    engines: Engines,
    kafka_admin: AIOKafkaAdminClient,
    mongo_client: AsyncMongoClient[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Suite]:
    async with AsyncExitStack() as stack:
        s = await start_suite(
            engines,
            kafka_admin,
            mongo_client,
            tmp_path_factory.mktemp("gateway-ids"),
            stack,
            with_signals=False,
            # every call reaches the service: the trace test follows the call into it
            gateway_overrides={"products_cache_s": 0, "read_model_max_age_s": 0},
        )
        await s.add_partner("ids-a", ALL_SCOPES)
        await s.add_partner("ids-reader", ["loans:read"])
        yield s


@pytest.fixture(scope="module")
def spans(suite: Suite) -> Iterator[InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    assert isinstance(provider, TracerProvider), "the services installed the process's provider"
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # keeps nothing more for the rest of the session


def _request_info(error: grpc.aio.AioRpcError) -> error_details_pb2.RequestInfo:
    [info] = [d for d in error_details(error) if isinstance(d, error_details_pb2.RequestInfo)]
    return info


async def _refused(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


async def test_a_successful_call_carries_a_request_id(suite: Suite) -> None:
    async with suite.client("ids-a") as zc:
        call = zc.loans.ListLoanProducts(loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata())
        assert (await call).products
        trailers = dict(await call.trailing_metadata() or ())
        assert HEX32.match(trailers["x-request-id"])
        again = zc.loans.ListLoanProducts(
            loan_pb2.ListLoanProductsRequest(), metadata=zc.metadata()
        )
        await again
        assert (
            dict(await again.trailing_metadata() or ())["x-request-id"] != trailers["x-request-id"]
        )


async def test_a_stream_sends_its_request_id_when_accepted(suite: Suite) -> None:
    async with suite.client("ids-a") as zc:
        stream = zc.signals.WatchRiskAlerts(
            signals_pb2.WatchRiskAlertsRequest(), metadata=zc.metadata(), timeout=30
        )
        initial = dict(await asyncio.wait_for(stream.initial_metadata(), 10) or ())
        assert HEX32.match(initial["x-request-id"])
        stream.cancel()


async def test_refusals_carry_request_info_with_the_trailer_s_id(suite: Suite) -> None:
    async with suite.client("ids-a") as zc:
        # INVALID_ARGUMENT: a mutating call without its idempotency key
        bad = await _refused(
            zc.loans.ApplyForLoan(
                loan_pb2.ApplyForLoanRequest(
                    party_id=str(uuid.uuid4()), product_id="merchant-310", amount=cny(100_000),
                    term_months=6, purpose="stock", device_id="d",
                ),
                metadata=zc.metadata(token="t"),
            )
        )  # fmt: skip
    assert bad.code() == grpc.StatusCode.INVALID_ARGUMENT
    async with suite.client("ids-reader") as zc:
        # PERMISSION_DENIED: the partner lacks loans:write
        denied = await _refused(
            zc.loans.ApplyForLoan(
                loan_pb2.ApplyForLoanRequest(party_id=str(uuid.uuid4())),
                metadata=zc.metadata(key=uuid.uuid4().hex),
            )
        )
    assert denied.code() == grpc.StatusCode.PERMISSION_DENIED
    for error, method in ((bad, "LoanService/ApplyForLoan"), (denied, "LoanService/ApplyForLoan")):
        info = _request_info(error)
        assert HEX32.match(info.request_id)
        assert info.request_id == request_id_of(error)
        assert info.serving_data == method
        kinds = {type(d).__name__ for d in error_details(error)}
        assert "ErrorInfo" in kinds  # the details there were before are still there
    assert "BadRequest" in {type(d).__name__ for d in error_details(bad)}
    assert _request_info(bad).request_id != _request_info(denied).request_id


async def test_a_partner_trace_is_continued_through_the_gateway_into_the_service(
    suite: Suite, spans: InMemorySpanExporter
) -> None:
    partner_trace = uuid.uuid4().hex
    traceparent = f"00-{partner_trace}-{uuid.uuid4().hex[:16]}-01"
    async with suite.client("ids-a") as zc:
        call = zc.loans.ListLoanProducts(
            loan_pb2.ListLoanProductsRequest(),
            metadata=(*zc.metadata(), ("traceparent", traceparent)),
        )
        await call
        assert dict(await call.trailing_metadata() or ())["x-request-id"] == partner_trace
        refused = await _refused(
            zc.loans.GetLoan(loan_pb2.GetLoanRequest(loan_id="x"), metadata=(
                *zc.metadata(), ("traceparent", f"00-{partner_trace}-{uuid.uuid4().hex[:16]}-01"),
            ))
        )  # fmt: skip
        assert _request_info(refused).request_id == partner_trace

    async def traced() -> list[Any]:
        found = [
            s for s in spans.get_finished_spans() if s.context.trace_id == int(partner_trace, 16)
        ]
        kinds = {(s.kind, s.name) for s in found}
        ok = (SpanKind.SERVER, "zerocontact.gateway.v1.LoanService/ListLoanProducts") in kinds and (
            SpanKind.CLIENT, "GET loan"
        ) in kinds and any(
            s.kind == SpanKind.SERVER and s.resource.attributes.get("service.name") != "gateway"
            and "/v1/products" in s.name for s in found
        )  # fmt: skip
        return found if ok else []

    found = await eventually(traced, within_s=10)
    by_id = {s.context.span_id: s for s in found}
    server = next(s for s in found if s.name.endswith("/ListLoanProducts"))
    client = next(s for s in found if s.name == "GET loan")
    service = next(s for s in found if s.kind == SpanKind.SERVER and "/v1/products" in s.name)
    assert client.parent is not None and client.parent.span_id == server.context.span_id
    assert service.parent is not None and by_id[service.parent.span_id] is client
    assert server.attributes["zerocontact.partner_id"] == "ids-a"
    refusal = next(s for s in found if s.name.endswith("/GetLoan"))
    assert refusal.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
