"""The gateway's pure parts: problem → gRPC status mapping, request conversion, certificates,
credential digests and peer addresses."""

from __future__ import annotations

import json

import grpc
import pytest
from cryptography import x509
from google.rpc import error_details_pb2, status_pb2

from zerocontact.common.v1 import money_pb2
from zerocontact.gateway import certs, convert
from zerocontact.gateway.errors import (
    RETRIED_CODES,
    RETRY_PUSHBACK_HEADER,
    GatewayError,
    from_problem,
)
from zerocontact.gateway.guard import _peer_address
from zerocontact.gateway.store import credential_digest, new_credential
from zerocontact.partner_client import SERVICE_CONFIG, channel_options


def _details(error: GatewayError) -> dict[str, object]:
    proto = error.status()
    out: dict[str, object] = {}
    for key, value in proto.trailing_metadata:
        if key == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(value)
            for d in st.details:
                for kind in (
                    error_details_pb2.ErrorInfo,
                    error_details_pb2.BadRequest,
                    error_details_pb2.RetryInfo,
                ):
                    if d.Is(kind.DESCRIPTOR):
                        m = kind()
                        d.Unpack(m)
                        out[kind.__name__] = m
    return out


def test_a_422_names_each_field_in_the_request_s_terms() -> None:
    body = {
        "title": "invalid_request",
        "detail": "the request has invalid fields",
        "errors": [
            {"field": "body.purpose", "message": "too long", "type": "string_too_long"},
            {"field": "body.currency", "message": "bad", "type": "x"},
        ],
    }
    error = from_problem(422, body, renames={"currency": "amount"})
    assert error.code is grpc.StatusCode.INVALID_ARGUMENT
    assert error.reason == "INVALID_REQUEST"
    assert [f for f, _ in error.violations] == ["purpose", "amount"]
    details = _details(error)
    bad = details["BadRequest"]
    assert isinstance(bad, error_details_pb2.BadRequest)
    assert [v.field for v in bad.field_violations] == ["purpose", "amount"]
    info = details["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.reason == "INVALID_REQUEST"


@pytest.mark.parametrize(
    ("status", "title", "code"),
    [
        (401, "invalid_token", grpc.StatusCode.UNAUTHENTICATED),
        (403, "step_up_required", grpc.StatusCode.PERMISSION_DENIED),
        (404, "not_found", grpc.StatusCode.NOT_FOUND),
        (409, "duplicate_party", grpc.StatusCode.ALREADY_EXISTS),
        (409, "request_in_progress", grpc.StatusCode.ABORTED),
        (409, "enterprise_not_verified", grpc.StatusCode.FAILED_PRECONDITION),
        (503, "busy", grpc.StatusCode.UNAVAILABLE),
        (500, "boom", grpc.StatusCode.INTERNAL),
    ],
)
def test_problems_map_once_to_a_code_and_a_stable_reason(
    status: int, title: str, code: grpc.StatusCode
) -> None:
    error = from_problem(status, {"title": title, "detail": "d", "required_aal": "AAL2"})
    assert error.code is code and error.reason == title.upper()
    if status >= 500:
        assert error.message == "the service failed"  # nothing internal leaks


def test_a_throttled_problem_carries_retry_info() -> None:
    error = from_problem(429, {"title": "account_locked", "retry_after_s": 30})
    assert error.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    retry = _details(error)["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo)
    assert retry.retry_delay.seconds == 30


def test_not_yet_known_is_unavailable_with_retry_info_and_a_pushback_for_grpc_retries() -> None:
    body = {
        "type": "urn:zerocontact:problem:party_not_yet_known", "title": "party_not_yet_known",
        "status": 503, "detail": "loan has not yet heard of party p", "party_id": "p-1",
        "retry_after_s": 1.0,
    }  # fmt: skip
    error = from_problem(503, body)
    assert error.code is grpc.StatusCode.UNAVAILABLE and error.reason == "PARTY_NOT_YET_KNOWN"
    details = _details(error)
    info, retry = details["ErrorInfo"], details["RetryInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["party_id"] == "p-1"
    assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 1
    trailers = dict(error.status("ab" * 16).trailing_metadata)
    assert trailers[RETRY_PUSHBACK_HEADER] == "1000"  # what gRPC's retry policy waits
    # the service config retries exactly these codes; the JSON says the same
    config = json.loads(SERVICE_CONFIG)
    policy = config["methodConfig"][0]["retryPolicy"]
    assert policy["retryableStatusCodes"] == [c.name for c in RETRIED_CODES]
    assert 2 <= policy["maxAttempts"] <= 5


def test_not_verified_is_failed_precondition_with_levels_and_retry_info_but_no_pushback() -> None:
    body = {
        "title": "party_not_verified", "detail": "identity is verified to level BASIC",
        "kyc_level": "BASIC", "required_kyc_level": "VERIFIED", "retry_after_s": 2.0,
    }  # fmt: skip
    error = from_problem(403, body)
    assert error.code is grpc.StatusCode.FAILED_PRECONDITION
    info = _details(error)["ErrorInfo"]
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert dict(info.metadata) == {"kyc_level": "BASIC", "required_kyc_level": "VERIFIED"}
    assert "RetryInfo" in _details(error)
    assert RETRY_PUSHBACK_HEADER not in dict(error.status().trailing_metadata)


def test_the_service_config_leaves_authentication_unretried() -> None:
    config = json.loads(SERVICE_CONFIG)
    retried, plain = config["methodConfig"]
    assert {n["service"] for n in retried["name"]} == {
        f"zerocontact.gateway.v1.{s}"
        for s in (
            "IdentityService",
            "LoanService",
            "PayrollService",
            "SignalService",
            "AssistantService",
        )
    }
    assert "retryPolicy" not in plain
    assert {n.get("method") for n in plain["name"]} == {
        "StartAuthentication", "CompleteAuthentication"
    }  # fmt: skip
    assert ("grpc.enable_retries", 1) in channel_options()
    assert ("grpc.service_config", SERVICE_CONFIG) in channel_options()


def test_money_is_validated_and_converted_without_floats() -> None:
    assert convert.major(money_pb2.Money(currency_code="CNY", minor_units=3_000_001), "amount") == (
        "30000.01",
        "CNY",
    )
    with pytest.raises(GatewayError) as caught:
        convert.major(money_pb2.Money(currency_code="cny", minor_units=-1), "amount")
    assert {f for f, _ in caught.value.violations} == {
        "amount.currency_code",
        "amount.minor_units",
    }
    assert convert.money("0.10", "CNY").minor_units == 10
    with pytest.raises(GatewayError):
        convert.require_uuid("../etc", "loan_id")


def test_a_partner_certificate_names_the_partner_in_its_san_uri() -> None:
    ca = certs.issue_ca()
    issued = certs.issue_partner(ca, "shop-a")
    cert = x509.load_pem_x509_certificate(issued.cert_pem)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [
        "urn:zerocontact:partner:shop-a"
    ]
    assert cert.issuer == x509.load_pem_x509_certificate(ca.cert_pem).subject
    server = x509.load_pem_x509_certificate(certs.issue_server(ca).cert_pem)
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)


def test_credentials_are_random_and_stored_as_keyed_digests() -> None:
    a, b = new_credential(), new_credential()
    assert a != b and len(a) > 40
    pepper = b"p" * 32
    digest = credential_digest(pepper, a)
    assert a.encode() not in digest and len(digest) == 32
    assert digest != credential_digest(b"q" * 32, a)


def test_peer_addresses() -> None:
    assert _peer_address("ipv4:10.0.0.7:5123") == "10.0.0.7"
    assert _peer_address("ipv6:[::1]:5123") == "::1"


@pytest.mark.parametrize(
    ("amount", "currency"),
    [("8884.88", "CNY"), ("0.1", "CNY"), ("-12.30", "CNY"), ("100", "JPY"), ("1.005", "CNY")],
)
def test_the_fast_amount_path_agrees_with_money(amount: str, currency: str) -> None:
    from decimal import Decimal

    from zerocontact.platform.money import InvalidAmount, Money

    try:
        expected = Money.of(Decimal(amount), currency).minor_units
    except InvalidAmount:
        with pytest.raises(InvalidAmount):
            convert.money(amount, currency)
        return
    assert convert.money(amount, currency).minor_units == expected


def test_an_engine_outage_is_unavailable_and_retryable_at_the_gateway_and_behind_it() -> None:
    from pymongo.errors import AutoReconnect

    from zerocontact.gateway.guard.envelope import _ending

    # The gateway's own database gone: not INTERNAL, and the engine's address is not told.
    own = _ending(AutoReconnect("127.0.0.1:27017: connection closed"), "GetLoan")
    assert own.code is grpc.StatusCode.UNAVAILABLE and own.reason == "ENGINE_UNAVAILABLE"
    assert "27017" not in own.message
    assert own.code in RETRIED_CODES
    retry = _details(own)["RetryInfo"]
    assert isinstance(retry, error_details_pb2.RetryInfo) and retry.retry_delay.seconds == 1
    # A service's engine gone: its 503 problem, as the platform answers it.
    body = {
        "type": "urn:zerocontact:problem:engine_unavailable", "title": "engine_unavailable",
        "status": 503, "detail": "retry later", "retry_after_s": 1,
    }  # fmt: skip
    behind = from_problem(503, body)
    assert behind.code is grpc.StatusCode.UNAVAILABLE and behind.reason == "ENGINE_UNAVAILABLE"
