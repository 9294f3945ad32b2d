"""Resume tokens, webhook signatures, back-off and webhook bodies (no engines)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

import grpc
import pytest

from zerocontact.gateway.errors import GatewayError
from zerocontact.gateway.resume import Position, ResumeTokens
from zerocontact.gateway.watch import Cursor, Notice
from zerocontact.gateway.webhooks.dispatcher import backoff
from zerocontact.gateway.webhooks.events import EVENT_TYPES, body
from zerocontact.gateway.webhooks.signing import new_secret, signature
from zerocontact.loan.v1 import events_pb2 as loan_pb2
from zerocontact.partner_client import WebhookSignatureError, verify_webhook

PEPPER = b"p" * 32


def _refused(tokens: ResumeTokens, token: str, partner: str = "a", key: str = "alerts") -> None:
    with pytest.raises(GatewayError) as caught:
        tokens.verify(token, partner_id=partner, topic="risk", key=key)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == "INVALID_RESUME_TOKEN"
    assert caught.value.violations[0][0] == "resume_token"


def test_resume_token_round_trip_and_refusals() -> None:
    tokens = ResumeTokens(PEPPER)
    position = Position("a", "risk", "alerts", {0: 5, 3: 12}, ("APPROVED", "", ""))
    token = tokens.sign(position)
    assert token.startswith("zrt1.")
    assert tokens.verify(token, partner_id="a", topic="risk", key="alerts") == position
    _refused(tokens, token, partner="b")  # another partner's
    _refused(tokens, token, key="alerts:x")  # another stream's
    _refused(ResumeTokens(b"q" * 32), token)  # another gateway's key
    prefix, _payload, mac = token.split(".")
    forged = json.dumps({"p": "a", "t": "risk", "k": "alerts", "o": {"0": 0}}).encode()
    import base64

    b64 = base64.urlsafe_b64encode(forged).decode().rstrip("=")
    _refused(tokens, f"{prefix}.{b64}.{mac}")  # rewound offsets, old MAC
    for junk in ("", "zrt1", "zrt1..", "zrt2.a.b", "zrt1.!!.??", "x" * 10_000):
        _refused(tokens, junk)


def test_cursor_skips_what_the_token_had_seen() -> None:
    cursor = Cursor("risk", {0: 10})
    old, new = (
        Notice("risk_alert", None, "e1", partition=0, offset=9),
        Notice("risk_alert", None, "e2", partition=0, offset=10),
    )
    assert not cursor.fresh(old) and cursor.fresh(new)
    cursor.advance(new)
    assert cursor.offsets == {0: 11} and not cursor.fresh(new)
    assert cursor.fresh(Notice("risk_alert", None, "e3", partition=4, offset=0))


def test_signature_verifies_and_tampering_fails() -> None:
    secret, payload = new_secret(), b'{"id":"e1","type":"risk.alert.raised"}'
    now = int(time.time())
    header = signature(secret, payload, now)
    assert verify_webhook(payload, header, secret)["id"] == "e1"
    assert verify_webhook(payload, f"{header},v1={'0' * 64}", secret)  # rotation: any v1
    for bad_body, bad_header, bad_secret, at in (
        (payload + b" ", header, secret, now),
        (payload, header, new_secret(), now),
        (payload, header.replace("v1=", "v0="), secret, now),
        (payload, "garbage", secret, now),
        (payload, header, secret, now + 301),  # outside the tolerance
    ):
        with pytest.raises(WebhookSignatureError):
            verify_webhook(bad_body, bad_header, bad_secret, now=at)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    for attempts, ceiling in ((1, 10.0), (2, 20.0), (3, 40.0), (20, 3600.0)):
        delays = {backoff(attempts, 10.0, 3600.0) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jitter


def test_webhook_body_has_no_personal_data_and_no_float_money() -> None:
    event = loan_pb2.LoanApplicationSubmitted(
        application_id="app-1", party_id="party-1", product_id="merchant-310", term_months=12,
        purpose="rent", device_id="device-secret", source_address="203.0.113.9",
    )  # fmt: skip
    event.amount.currency_code, event.amount.minor_units = "CNY", 3_000_000
    notice = Notice(
        "loan_application_submitted", event, "evt-1", datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    )
    text = body(notice, EVENT_TYPES["loan_application_submitted"])
    data = json.loads(text)
    assert data["id"] == "evt-1" and data["type"] == "loan.application.submitted"
    assert data["created"] == "2026-12-01T09:30:00Z"
    assert data["data"]["amount"] == {"currency_code": "CNY", "minor_units": "3000000"}
    assert "device-secret" not in text and "203.0.113.9" not in text and "rent" not in text
