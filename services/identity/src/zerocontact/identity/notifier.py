"""The ``Notifier`` port (SMS one-time codes) and its adapters.

Delivery design (no one-time code on Kafka, in logs or in MongoDB):

1. identity makes a delivery: the SMS text, with the code and the full phone number, is
   sealed with HPKE (RFC 9180, X25519 / HKDF-SHA256 / AES-128-GCM) to the SMS gateway's public
   key, bound to the delivery id; identity keeps only the code's digest and cannot open it;
2. the default adapter, :class:`OutboxSmsNotifier`, stores the sealed delivery and, in the
   same write, an ``SmsCodeRequested`` notification for ``identity.notifications.v1`` that
   carries the delivery id (the reference), the masked phone and the template, nothing else;
3. the SMS team's consumer redeems the reference once at
   ``POST /v1/sms-deliveries/{delivery_id}/claim`` (``X-Gateway-Key``), opens the payload with
   its private key and sends the SMS. The sealed payload is removed when claimed.

:class:`SmsGatewaySimulator` plays the SMS team's side in tests and local runs: it holds the
private key and opens claimed payloads. It is a simulator, documented as such.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from zerocontact.platform.ids import new_id

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM)
_INFO = b"zerocontact identity sms v1:"


def seal_for_gateway(public_key: X25519PublicKey, payload: bytes, *, delivery_id: str) -> bytes:
    """HPKE-seal ``payload`` to the gateway, bound to ``delivery_id``."""
    return _SUITE.encrypt(payload, public_key, info=_INFO + delivery_id.encode())


def open_sealed(private_key: X25519PrivateKey, sealed: bytes, *, delivery_id: str) -> bytes:
    """Open a payload sealed by :func:`seal_for_gateway` (the SMS gateway's side)."""
    return _SUITE.decrypt(sealed, private_key, info=_INFO + delivery_id.encode())


@dataclass(frozen=True)
class SmsCodeRequest:
    """Everything a notifier needs to get a code to a phone."""

    customer_id: str
    phone_e164: str
    phone_masked: str
    code: str
    template: str
    expires_at: datetime
    requested_at: datetime


class Notifier(Protocol):
    """Sends one-time codes to customers; returns the delivery reference."""

    async def send_sms_code(self, request: SmsCodeRequest) -> str:
        """Arrange delivery of ``request.code``; never log or publish the code itself."""
        ...


class DeliveryStore(Protocol):
    """Where :class:`OutboxSmsNotifier` writes a delivery and its notification (one write)."""

    async def store_delivery(
        self, *, delivery_id: str, request: SmsCodeRequest, sealed: bytes
    ) -> None:
        """Store the sealed delivery and its ``SmsCodeRequested`` event; nudge the relay."""
        ...


class OutboxSmsNotifier:
    """The default adapter: a sealed delivery plus a reference-only event through the outbox."""

    def __init__(self, *, gateway_public_key: X25519PublicKey, store: DeliveryStore) -> None:
        """``gateway_public_key`` is the SMS gateway's X25519 key from settings."""
        self._public = gateway_public_key
        self._store = store

    async def send_sms_code(self, request: SmsCodeRequest) -> str:
        """Seal the message to the gateway and publish the reference."""
        delivery_id = new_id()
        payload = json.dumps(
            {
                "to": request.phone_e164,
                "template": request.template,
                "code": request.code,
                "expires_at": request.expires_at.isoformat(),
            }
        ).encode()
        sealed = seal_for_gateway(self._public, payload, delivery_id=delivery_id)
        await self._store.store_delivery(delivery_id=delivery_id, request=request, sealed=sealed)
        return delivery_id


@dataclass(frozen=True)
class SmsMessage:
    """An opened delivery, as the SMS gateway would send it."""

    delivery_id: str
    to: str
    template: str
    code: str


class SmsGatewaySimulator:
    """SIMULATOR of the SMS team's gateway: holds its private key, opens claimed deliveries.

    Used by tests and local runs in place of the real gateway; it never sends anything and
    is not wired into the identity service itself.
    """

    def __init__(self, private_key: X25519PrivateKey | None = None) -> None:
        """A gateway with ``private_key`` (a fresh one by default)."""
        self.private_key = private_key or X25519PrivateKey.generate()
        self.sent: list[SmsMessage] = []

    @property
    def public_key(self) -> X25519PublicKey:
        """The key identity seals to."""
        return self.private_key.public_key()

    def open(self, sealed: bytes, *, delivery_id: str) -> SmsMessage:
        """Open a claimed delivery and record it as sent."""
        body = json.loads(open_sealed(self.private_key, sealed, delivery_id=delivery_id))
        message = SmsMessage(delivery_id, body["to"], body["template"], body["code"])
        self.sent.append(message)
        return message

    def last_code_for(self, phone_e164: str) -> str | None:
        """The code of the last message opened for ``phone_e164``."""
        for message in reversed(self.sent):
            if message.to == phone_e164:
                return message.code
        return None
