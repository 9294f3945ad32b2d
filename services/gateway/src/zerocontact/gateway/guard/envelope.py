"""The call envelope: servicer methods are decorated with :func:`unary` or :func:`streaming`,
which open the call (:meth:`Gateway.open`), bound its deadline, run it (idempotently when
mutating; in a watch slot when streaming), map how it ended to a gRPC status and record it.

Every response carries the call's request id (:func:`~zerocontact.gateway.tracing.request_id`,
the trace id) in the ``x-request-id`` trailer; a stream also sends it in its initial metadata
once accepted, and a refusal carries it in a ``google.rpc.RequestInfo`` detail. (A unary
success has it in the trailers only: grpc.aio sends a unary call's initial metadata with the
response, empty, unless the handler sends it first in a batch of its own.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message
from opentelemetry import trace

from zerocontact.gateway.errors import (
    REQUEST_ID_HEADER,
    GatewayError,
    deadline_exceeded,
    engine_unavailable,
)
from zerocontact.gateway.guard.caller import Caller
from zerocontact.gateway.guard.gateway import Gateway
from zerocontact.gateway.guard.record import _audit
from zerocontact.gateway.tracing import request_id
from zerocontact.platform.http import ENGINE_UNAVAILABLE

log = logging.getLogger(__name__)

REPLAYED_HEADER = "idempotent-replayed"
PACKAGE = "zerocontact.gateway.v1"


Unary = Callable[[Any, Any, Caller], Awaitable[Any]]
Streaming = Callable[[Any, Any, Caller], AsyncIterator[Any]]


def unary(
    scope: str, *, mutating: bool = False, response: type[Message] | None = None
) -> Callable[[Unary], Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]]:
    """Wrap a unary servicer method in the call envelope."""

    def decorate(
        fn: Unary,
    ) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[Any]]:
        name = fn.__name__

        async def handler(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> Any:
            gateway: Gateway = self.gateway
            method = f"/{PACKAGE}.{self.SERVICE}/{name}"
            async with _audited(gateway, method, context, (asyncio.CancelledError,)) as audited:
                caller = await gateway.open(context, scope, stream=False)
                audited.partner_id = caller.partner.partner_id
                async with asyncio.timeout(max(caller.remaining(), 0.001)):
                    if mutating:
                        assert response is not None
                        result, audited.replayed = await gateway.idempotent(
                            caller, method, request, response, lambda: fn(self, request, caller)
                        )
                        if audited.replayed:
                            context.set_trailing_metadata(
                                ((REQUEST_ID_HEADER, audited.request_id), (REPLAYED_HEADER, "true"))
                            )
                    else:
                        result = await fn(self, request, caller)
                return result

        handler.__name__ = name
        handler.__doc__ = fn.__doc__
        return handler

    return decorate


def _ending(exc: Exception, method: str) -> GatewayError:
    """The status a call that raised ``exc`` ends with: a refusal as raised, a passed deadline,
    or (logged: a fault of ours, not the caller's) INTERNAL."""
    if isinstance(exc, GatewayError):
        return exc
    if isinstance(exc, TimeoutError):
        return deadline_exceeded()
    if isinstance(exc, ENGINE_UNAVAILABLE):
        # The message names the engine's host and port: logged, not answered.
        log.warning("engine unavailable: %s", method, extra={"error": repr(exc)})
        return engine_unavailable()
    log.exception("gateway call failed: %s", method)
    return GatewayError(grpc.StatusCode.INTERNAL, "INTERNAL", "internal error")


@dataclass
class _Audited:
    """What the audit record of a call learns while the call runs."""

    request_id: str
    partner_id: str = ""
    replayed: bool = False


@contextlib.asynccontextmanager
async def _audited(
    gateway: Gateway,
    method: str,
    context: grpc.aio.ServicerContext[Any, Any],
    cancelled: tuple[type[BaseException], ...],
) -> AsyncIterator[_Audited]:
    """How a call's body ends, for both envelopes: ``cancelled`` is audited as CANCELLED, an
    abort passes, any other exception becomes its status (:func:`_ending`); every call, however
    it ended, gets its metrics and audit record. The request id goes in the trailers now (a
    refusal's status replaces them with its own, which carry it too)."""
    started, started_at = time.perf_counter(), datetime.now(UTC)
    # Read while the call is alive: grpc.aio's context of a cancelled or finished call
    # must not be touched from `finally` (context.peer() there crashed the process).
    peer = context.peer()
    audited = _Audited(request_id())
    context.set_trailing_metadata(((REQUEST_ID_HEADER, audited.request_id),))
    outcome, reason = "OK", ""
    try:
        yield audited
    except cancelled:
        outcome, reason = "CANCELLED", "CANCELLED"
        raise
    except grpc.aio.AbortError:
        raise
    except Exception as exc:
        error = _ending(exc, method)
        outcome, reason = error.code.name, error.reason
        # a refused credential: audit under the partner the certificate names
        audited.partner_id = audited.partner_id or error.metadata.get("partner_id", "")
        await context.abort_with_status(
            error.status(audited.request_id, serving_data=method.rpartition(".")[2])
        )
    finally:
        if audited.partner_id:  # the call's span: support finds a partner's calls by it
            trace.get_current_span().set_attribute("zerocontact.partner_id", audited.partner_id)
        _audit(gateway, method, audited.partner_id, outcome, reason, started, started_at,
               peer, audited.replayed)  # fmt: skip


def streaming(
    scope: str, *, resumable: bool = False
) -> Callable[
    [Streaming], Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]
]:
    """Wrap a server-streaming servicer method in the call envelope."""

    def decorate(
        fn: Streaming,
    ) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]:
        name = fn.__name__

        async def handler(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            gateway: Gateway = self.gateway
            method = f"/{PACKAGE}.{self.SERVICE}/{name}"
            cancelled = (asyncio.CancelledError, GeneratorExit)
            async with _audited(gateway, method, context, cancelled) as audited:
                caller = await gateway.open(context, scope, stream=True)
                audited.partner_id = caller.partner.partner_id
                with gateway.watcher_slot(caller.partner):
                    # Accepted: the partner has the request id before the first event. A
                    # resumable stream accepts itself once subscribed (its initial metadata
                    # then carries its start position's resume token too).
                    sent = False

                    async def accept(*extra: tuple[str, str]) -> None:
                        nonlocal sent
                        if not sent:
                            sent = True
                            await context.send_initial_metadata(
                                ((REQUEST_ID_HEADER, audited.request_id), *extra)
                            )

                    caller.accept = accept
                    if not resumable:
                        await accept()
                    async with asyncio.timeout(max(caller.remaining(), 0.001)):
                        async for item in fn(self, request, caller):
                            await accept()
                            yield item

        handler.__name__ = name
        handler.__doc__ = fn.__doc__
        return handler

    return decorate
