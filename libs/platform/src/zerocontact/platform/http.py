"""FastAPI edges shared by every service: health, readiness, metrics, problem responses."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiokafka.errors import (  # type: ignore[import-untyped, unused-ignore]
    KafkaConnectionError,
    KafkaTimeoutError,
    LeaderNotAvailableError,
    NoBrokersAvailable,
    NodeNotReadyError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pymongo.errors import ConnectionFailure

from zerocontact.platform.errors import (
    Conflict,
    DomainError,
    Forbidden,
    Invalid,
    NotFound,
    Pending,
    Throttled,
    Unauthenticated,
    Unavailable,
)
from zerocontact.platform.metrics import run_checks

ReadinessCheck = Callable[[], Awaitable[bool]]

log = logging.getLogger(__name__)

__all__ = [
    "ENGINE_UNAVAILABLE",
    "ENGINE_UNAVAILABLE_RETRY_AFTER_S",
    "HTTP_STATUS",
    "ReadinessCheck",
    "http_status",
    "install_operational_routes",
    "problem",
]

HTTP_STATUS: Mapping[type[DomainError], int] = {
    Pending: 202,
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Throttled: 429,
    Unavailable: 503,
    DomainError: 409,
}
"""The HTTP status of each domain-error category: the one place domain errors meet HTTP."""


ENGINE_UNAVAILABLE: tuple[type[Exception], ...] = (
    ConnectionFailure,  # PyMongo: AutoReconnect, NetworkTimeout, ServerSelectionTimeoutError, ...
    KafkaConnectionError,
    KafkaTimeoutError,
    NoBrokersAvailable,
    NodeNotReadyError,
    LeaderNotAvailableError,
    NotLeaderForPartitionError,
    RequestTimedOutError,
)
"""Errors meaning the database or the broker cannot be reached now: answered 503, retryable."""

ENGINE_UNAVAILABLE_RETRY_AFTER_S = 1
"""The ``Retry-After`` of an engine-outage 503: the engines come back within seconds."""


def http_status(error: DomainError) -> int:
    """The status of ``error``'s nearest category in :data:`HTTP_STATUS`."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 409


def problem(status: int, code: str, detail: str, **extra: Any) -> JSONResponse:
    """An RFC 9457 problem response."""
    body = {
        "type": f"urn:zerocontact:problem:{code}",
        "title": code,
        "status": status,
        "detail": detail,
    }
    return JSONResponse(body | extra, status_code=status, media_type="application/problem+json")


def install_operational_routes(
    app: FastAPI,
    *,
    checks: Mapping[str, ReadinessCheck],
    timeout_s: float = 2.0,
) -> None:
    """Add ``/healthz`` (liveness), ``/readyz`` (every check passes) and ``/metrics``.

    Validation errors become 422 problems that name each bad field but never echo its
    value, so personal data sent by mistake is not reflected back. An engine that cannot be
    reached (:data:`ENGINE_UNAVAILABLE`) becomes a 503 ``engine_unavailable`` problem with
    ``Retry-After``, not a 500: a client retries it with its idempotency key.
    """

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        results = await run_checks(checks, timeout_s)  # also records zc_engine_up
        status = {name: "ok" if ok else "failing" for name, ok in results.items()}
        ready = all(results.values())
        return JSONResponse(
            {"status": "ready" if ready else "not-ready", "checks": status},
            status_code=200 if ready else 503,
        )

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"], "type": e["type"]}
            for e in exc.errors()
        ]
        return problem(422, "invalid_request", "the request has invalid fields", errors=errors)

    async def engine_unavailable(_: Request, exc: Exception) -> JSONResponse:
        # The message names the engine's host and port: logged, not answered.
        log.warning("engine unavailable; answered 503", extra={"error": repr(exc)})
        response = problem(
            503,
            "engine_unavailable",
            "a database or broker this service needs cannot be reached; retry later",
            retry_after_s=ENGINE_UNAVAILABLE_RETRY_AFTER_S,
        )
        response.headers["Retry-After"] = str(ENGINE_UNAVAILABLE_RETRY_AFTER_S)
        return response

    for error in ENGINE_UNAVAILABLE:
        app.add_exception_handler(error, engine_unavailable)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, exc: DomainError) -> JSONResponse:
        response = problem(http_status(exc), exc.code, exc.detail, **exc.context)
        retry = exc.context.get("retry_after_s")
        if isinstance(retry, int | float) and retry >= 0 and response.status_code in (429, 503):
            # RFC 9110: whole seconds; the body's retry_after_s keeps the fraction
            response.headers["Retry-After"] = str(math.ceil(retry))
        return response
