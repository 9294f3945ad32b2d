"""Traces of the partner API: one SERVER span per RPC, continuing the partner's trace, and the
request id every response carries.

:class:`ServerSpans` is a grpc.aio server interceptor. It reads the W3C ``traceparent`` from
the call's metadata (a partner may send one: the gateway then continues the partner's trace),
starts the ``<package.Service>/<Method>`` SERVER span around the servicer method and records
how the call ended (``rpc.grpc.status_code``; ERROR status for the codes that mean a fault of
the server). The span holds the method and the status only: no request or response message and
no metadata value, so no personal data. Health and reflection are not traced (probes).

Why not ``opentelemetry-instrumentation-grpc``'s aio server interceptor (0.66b1, grpcio 1.85):

- it assumes every response-streaming handler is an async generator and runs
  ``async for`` over it; a handler that writes with ``context.write()`` (the health service's
  ``Watch``) then fails with UNKNOWN ("'async for' requires an object with __aiter__");
- its servicer-context proxy records the status only for ``abort``/``set_code``; the gateway's
  refusals end with ``abort_with_status`` (rich details), so every refused call was recorded
  with ``rpc.grpc.status_code`` 0 (OK), plus two ``exception`` events with a formatted stack
  trace ("Locally aborted.") per refusal;
- it re-wraps the method handler and proxies the context on every call.

:func:`request_id` is the id a response carries (``x-request-id``, ``RequestInfo``): the trace
id of the active span, or a random 32-hex id when tracing is off (no valid span), so partners
always have one to quote.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final, TypeAlias

import grpc
from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from zerocontact.platform.telemetry import context_of, current_ids

__all__ = ["ServerSpans", "request_id"]

Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"

# Not partner calls: probes and tooling.
UNTRACED: Final = frozenset(
    {
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "grpc.reflection.v1.ServerReflection",
    }
)
# The codes that mean the server failed (OpenTelemetry's gRPC conventions): ERROR status.
_SERVER_FAULTS: Final = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def request_id() -> str:
    """The request id of the call being served: its trace id, else a random 32-hex id."""
    ids = current_ids()
    return ids[0] if ids is not None else os.urandom(16).hex()


def _traceparent(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            return value
    return None


def _ended(
    span: Span, context: grpc.aio.ServicerContext[Any, Any], error: BaseException | None
) -> None:
    """Record how the call ended: the aborted code, CANCELLED, UNKNOWN (an escaped error), OK."""
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        code = grpc.StatusCode.CANCELLED  # the call is gone: its context is not read again
    else:
        code = context.code() or grpc.StatusCode.OK
        if error is not None and not isinstance(error, grpc.aio.AbortError):
            code = grpc.StatusCode.UNKNOWN if code is grpc.StatusCode.OK else code
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in _SERVER_FAULTS:
        span.set_status(Status(StatusCode.ERROR, code.name))


class ServerSpans(grpc.aio.ServerInterceptor):
    """A SERVER span per RPC (see the module docstring). Handlers are wrapped once per method."""

    def __init__(self, tracer_provider: trace.TracerProvider | None = None) -> None:
        self._tracer = trace.get_tracer("zerocontact.gateway", tracer_provider=tracer_provider)
        # method -> (the handler as registered, its traced twin)
        self._wrapped: dict[str, tuple[Handler, Handler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = await continuation(handler_call_details)
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        if handler is None or handler.request_streaming:  # the partner API has no client streams
            return handler
        service, _, name = method.lstrip("/").partition("/")
        if service in UNTRACED:
            return handler
        traced = self._traced(handler, f"{service}/{name}", service, name)
        self._wrapped[method] = (handler, traced)
        return traced

    def _span(self, span_name: str, attributes: dict[str, str], context: Any) -> Any:
        return self._tracer.start_as_current_span(
            span_name,
            context=context_of(_traceparent(context)),
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=False,  # an abort is how a refusal ends, not an exception to keep
            set_status_on_exception=False,
        )

    def _traced(self, handler: Handler, span_name: str, service: str, name: str) -> Handler:
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        start = self._span
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if not handler.response_streaming:
            unary_behavior: Any = handler.unary_unary

            async def unary(request: Any, context: Any) -> Any:
                with start(span_name, attributes, context) as span:
                    try:
                        response = await unary_behavior(request, context)
                    except BaseException as exc:
                        _ended(span, context, exc)
                        raise
                    _ended(span, context, None)
                    return response

            return grpc.unary_unary_rpc_method_handler(unary, **serializers)

        stream_behavior: Any = handler.unary_stream
        if inspect.isasyncgenfunction(stream_behavior):

            async def stream(request: Any, context: Any) -> AsyncIterator[Any]:
                with start(span_name, attributes, context) as span:
                    try:
                        async for item in stream_behavior(request, context):
                            yield item
                    except BaseException as exc:
                        _ended(span, context, exc)
                        raise
                    _ended(span, context, None)

            return grpc.unary_stream_rpc_method_handler(stream, **serializers)

        async def writing(request: Any, context: Any) -> None:  # writes with context.write()
            with start(span_name, attributes, context) as span:
                try:
                    await stream_behavior(request, context)
                except BaseException as exc:
                    _ended(span, context, exc)
                    raise
                _ended(span, context, None)

        return grpc.unary_stream_rpc_method_handler(writing, **serializers)
