"""Resume tokens of the watch streams: where a partner's stream was, signed by the gateway.

A token is ``zrt1.<payload>.<mac>`` (base64url without padding): the payload is compact JSON
``{"p": partner, "t": topic, "k": watched key, "o": {partition: next offset}, "s": [state]}``
and the mac is HMAC-SHA256 over ``zrt1.<payload>`` under a key derived from the gateway's
credential pepper (every replica shares it, so a token works on any replica). The offsets are
not secret, so the payload is not encrypted; the partners treat it as opaque. The MAC makes it
tamper-evident and binds it to the partner, the topic and what the stream watches: a token of
another partner, another stream or a forged one is ``INVALID_ARGUMENT`` naming
``resume_token`` (one answer for all, so it tells nothing about other partners).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field

from zerocontact.gateway.errors import GatewayError, invalid

PREFIX = "zrt1"
MAX_TOKEN_CHARS = 8192
_LABEL = b"zerocontact.gateway.resume-token.v1"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class Position:
    """What a token says: a topic position (next offset per partition) of one partner's
    stream over one key, plus the small state the stream had folded (loan watch only)."""

    partner_id: str
    topic: str
    key: str
    offsets: dict[int, int]
    state: tuple[str, ...] = field(default=())


class ResumeTokens:
    """Signs and verifies resume tokens."""

    def __init__(self, pepper: bytes) -> None:
        self._key = hmac.new(pepper, _LABEL, hashlib.sha256).digest()

    def _mac(self, signed: bytes) -> bytes:
        return hmac.new(self._key, signed, hashlib.sha256).digest()

    def sign(self, position: Position) -> str:
        """The token of ``position``."""
        payload = {
            "p": position.partner_id,
            "t": position.topic,
            "k": position.key,
            "o": {str(p): o for p, o in sorted(position.offsets.items())},
        }
        if position.state:
            payload["s"] = list(position.state)
        body = _b64(json.dumps(payload, separators=(",", ":")).encode())
        signed = f"{PREFIX}.{body}"
        return f"{signed}.{_b64(self._mac(signed.encode()))}"

    def verify(self, token: str, *, partner_id: str, topic: str, key: str) -> Position:
        """The position of a token this gateway signed for this partner, topic and key, or
        INVALID_ARGUMENT naming ``resume_token``."""
        refused = invalid(
            "resume_token", "not a resume token of this partner's stream: watch without one"
        )
        refused.reason = "INVALID_RESUME_TOKEN"
        if len(token) > MAX_TOKEN_CHARS:
            raise refused
        prefix, _, rest = token.partition(".")
        body, _, mac = rest.partition(".")
        if prefix != PREFIX or not body or not mac:
            raise refused
        try:
            presented = _unb64(mac)
            payload = json.loads(_unb64(body))
        except (binascii.Error, ValueError):
            raise refused from None
        if not hmac.compare_digest(presented, self._mac(f"{prefix}.{body}".encode())):
            raise refused
        try:
            position = Position(
                str(payload["p"]),
                str(payload["t"]),
                str(payload["k"]),
                {int(p): int(o) for p, o in dict(payload["o"]).items()},
                tuple(str(s) for s in payload.get("s", ())),
            )
        except (KeyError, TypeError, ValueError):
            raise refused from None
        if (position.partner_id, position.topic, position.key) != (partner_id, topic, key):
            raise refused
        return position


def expired() -> GatewayError:
    """OUT_OF_RANGE: the token's position is older than what the topic still holds."""
    import grpc

    return GatewayError(
        grpc.StatusCode.OUT_OF_RANGE,
        "RESUME_POSITION_EXPIRED",
        "the events after this resume token are no longer kept: re-sync with the Get* RPCs "
        "(or watch without a token, which starts with the current state) and keep the new "
        "tokens",
        metadata={"topic_retention": "exceeded"},
    )
