"""Webhook signatures (Stripe-style): ``Zerocontact-Signature: t=<unix>,v1=<hex>`` where the
hex is HMAC-SHA256 under the endpoint's signing secret of ``f"{t}.{body}"``. Receivers verify
with :func:`zerocontact.partner_client.verify_webhook` (or the snippet in docs/gateway.md)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SIGNATURE_HEADER = "Zerocontact-Signature"
EVENT_ID_HEADER = "Zerocontact-Event-Id"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A signing secret (256 random bits)."""
    return SECRET_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"
