"""gRPC errors with rich details (google.rpc): ErrorInfo with a stable reason on every error,
BadRequest field violations for bad input, RetryInfo when retrying later helps, and RequestInfo
with the call's request id (its trace id, also in the ``x-request-id`` trailer) for support.

The services answer RFC 9457 problems; :func:`from_problem` maps them once, here (one table
by HTTP status, refined by the problem's code). The gateway's own refusals that recur (a
resource not the partner's, a passed deadline, bad fields) are built by the helpers below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status  # type: ignore[import-untyped]

from zerocontact.platform.http import ENGINE_UNAVAILABLE_RETRY_AFTER_S

DOMAIN = "gateway.zerocontact"
# The call's request id (its trace id) in every response's metadata; partners quote it.
REQUEST_ID_HEADER = "x-request-id"
# gRPC retry pushback (gRFC A6): the server's delay before a retry, in milliseconds.
RETRY_PUSHBACK_HEADER = "grpc-retry-pushback-ms"
# The codes the published service config retries (clients/python/.../partner_client/service_config.json).
RETRIED_CODES = frozenset({grpc.StatusCode.UNAVAILABLE})


@dataclass(frozen=True)
class _Status(grpc.Status):
    """A grpc.Status (what ``abort_with_status`` takes)."""

    code: grpc.StatusCode
    details: str
    trailing_metadata: tuple[tuple[str, str | bytes], ...]


def request_info(request_id: str, serving_data: str) -> error_details_pb2.RequestInfo:
    """The google.rpc.RequestInfo of a refused call: the request id a partner quotes to support,
    and ``serving_data`` (short, no personal data: which gateway method answered)."""
    return error_details_pb2.RequestInfo(request_id=request_id, serving_data=serving_data)


@dataclass
class GatewayError(Exception):
    """A refusal with a gRPC code, a stable reason (UPPER_SNAKE) and optional details."""

    code: grpc.StatusCode
    reason: str
    message: str
    violations: list[tuple[str, str]] = field(default_factory=list)
    retry_after_s: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def status(self, request_id: str | None = None, serving_data: str = "") -> grpc.Status:
        """As a grpc.Status carrying google.rpc.Status details (grpc-status-details-bin); with
        ``request_id``, a RequestInfo detail and the ``x-request-id`` trailer too."""
        details: list[any_pb2.Any] = []
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN, metadata=self.metadata)
        )
        details.append(info)
        if self.violations:
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in self.violations
                ]
            )
            packed = any_pb2.Any()
            packed.Pack(bad)
            details.append(packed)
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            packed = any_pb2.Any()
            packed.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
            details.append(packed)
        if request_id is not None:
            packed = any_pb2.Any()
            packed.Pack(request_info(request_id, serving_data))
            details.append(packed)
        status: grpc.Status = rpc_status.to_status(
            status_pb2.Status(code=self.code.value[0], message=self.message, details=details)
        )
        trailers = tuple(status.trailing_metadata)
        if self.retry_after_s is not None and self.code in RETRIED_CODES:
            # gRPC's own retry policy (clients/python/.../partner_client/service_config.json) waits this long before the next
            # attempt instead of its random back-off: RetryInfo is for people and libraries.
            trailers += ((RETRY_PUSHBACK_HEADER, str(max(int(self.retry_after_s * 1000), 0))),)
        if request_id is not None:
            trailers += ((REQUEST_ID_HEADER, request_id),)
        if request_id is None and len(trailers) == len(status.trailing_metadata):
            return status
        return _Status(status.code, status.details, trailers)


def invalid(field_name: str, description: str) -> GatewayError:
    """INVALID_ARGUMENT naming one field."""
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
        f"invalid field {field_name}: {description}",
        [(field_name, description)],
    )


def invalid_fields(violations: list[tuple[str, str]]) -> GatewayError:
    """INVALID_ARGUMENT naming every bad field."""
    names = ", ".join(f for f, _ in violations)
    return GatewayError(
        grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST", f"invalid fields: {names}", violations
    )


def not_found(kind: str) -> GatewayError:
    """NOT_FOUND for a ``kind`` the partner does not own: the same answer as a missing one
    (no oracle telling one partner what another created)."""
    return GatewayError(grpc.StatusCode.NOT_FOUND, f"{kind.upper()}_NOT_FOUND", f"no such {kind}")


def deadline_exceeded(message: str = "the deadline passed") -> GatewayError:
    """DEADLINE_EXCEEDED: the call's deadline passed before the answer."""
    return GatewayError(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED", message)


def engine_unavailable() -> GatewayError:
    """UNAVAILABLE: a database or broker the gateway needs cannot be reached (retryable, like
    a service's 503 ``engine_unavailable``)."""
    return GatewayError(
        grpc.StatusCode.UNAVAILABLE,
        "ENGINE_UNAVAILABLE",
        "a database or broker the gateway needs cannot be reached; retry later",
        retry_after_s=ENGINE_UNAVAILABLE_RETRY_AFTER_S,
    )


_BY_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}
# Problems whose code says more than their HTTP status.
_BY_CODE = {
    "duplicate_party": grpc.StatusCode.ALREADY_EXISTS,
    "request_in_progress": grpc.StatusCode.ABORTED,
    "busy": grpc.StatusCode.UNAVAILABLE,
    "idempotency_conflict": grpc.StatusCode.INVALID_ARGUMENT,
    "insufficient_funds": grpc.StatusCode.FAILED_PRECONDITION,
    "repayment_exceeds_payoff": grpc.StatusCode.FAILED_PRECONDITION,
    "offer_not_available": grpc.StatusCode.FAILED_PRECONDITION,
    # The party is known but below the product's KYC level: the partner must act
    # (VerifyCustomer), so not a permission the caller lacks. Unknown yet is a 503 from the
    # service: UNAVAILABLE / PARTY_NOT_YET_KNOWN, which the service config retries.
    "party_not_verified": grpc.StatusCode.FAILED_PRECONDITION,
}
# Problem fields copied into ErrorInfo.metadata (identifiers and levels; never personal data).
_METADATA_KEYS = frozenset(
    ("state", "required_aal", "current_aal", "max_age_s", "party_id", "kyc_level",
     "required_kyc_level")
)  # fmt: skip
# Services' field paths ("body.amount") → the gRPC request's field names.
_FIELD_PREFIXES = ("body.", "query.", "path.", "header.")


def _field(name: str, renames: dict[str, str]) -> str:
    for prefix in _FIELD_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    head, _, rest = name.partition(".")
    head = renames.get(head, head)
    return f"{head}.{rest}" if rest else head


def from_problem(
    status: int, body: dict[str, Any], *, renames: dict[str, str] | None = None
) -> GatewayError:
    """Map a service's problem response to a GatewayError (field names as in the request)."""
    code_name = str(body.get("title") or body.get("code") or f"http_{status}")
    grpc_code = _BY_CODE.get(code_name) or _BY_STATUS.get(
        status, grpc.StatusCode.INTERNAL if status >= 500 else grpc.StatusCode.FAILED_PRECONDITION
    )
    violations: list[tuple[str, str]] = []
    for error in body.get("errors") or []:
        if isinstance(error, dict) and "field" in error:
            violations.append(
                (_field(str(error["field"]), renames or {}), str(error.get("message", "")))
            )
    if "field" in body and not violations:
        violations.append((_field(str(body["field"]), renames or {}), str(body.get("detail", ""))))
    retry = body.get("retry_after_s")
    detail = str(body.get("detail") or code_name) if status < 500 else "the service failed"
    if violations:
        detail = f"{detail}: " + ", ".join(f"{f} ({d})" for f, d in violations)
    metadata = {k: str(v) for k, v in body.items() if k in _METADATA_KEYS and v is not None}
    return GatewayError(
        grpc_code,
        code_name.upper(),
        detail,
        violations,
        float(retry) if isinstance(retry, int | float) else None,
        metadata,
    )


__all__ = [
    "DOMAIN",
    "REQUEST_ID_HEADER",
    "RETRIED_CODES",
    "RETRY_PUSHBACK_HEADER",
    "GatewayError",
    "code_pb2",
    "deadline_exceeded",
    "from_problem",
    "invalid",
    "invalid_fields",
    "not_found",
    "request_info",
]
