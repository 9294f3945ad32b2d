"""Token signing: the Ed25519 key ring, its JWKS, and access-token claims.

The key id is the RFC 7638 thumbprint of the public key, so a ``kid`` always names exactly
one key and never needs configuring. Rotation: deploy the new signing key and move the old
public key to ``jwt_previous_public_keys``; verifiers keep accepting tokens it signed until
they expire, then drop it from the list.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from jwt.algorithms import OKPAlgorithm

from zerocontact.identity.domain.authentication import Aal, Method

ALGORITHM = "EdDSA"


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_b64url(text: str) -> bytes:
    """Base64url without padding, as the settings hold keys."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def thumbprint(public_key: Ed25519PublicKey) -> str:
    """RFC 7638 JWK thumbprint (SHA-256) of an Ed25519 public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    canonical = json.dumps(
        {"crv": "Ed25519", "kty": "OKP", "x": _b64url(raw)}, separators=(",", ":")
    )
    return _b64url(hashlib.sha256(canonical.encode()).digest())


def _jwk(public_key: Ed25519PublicKey) -> dict[str, Any]:
    jwk: dict[str, Any] = OKPAlgorithm.to_jwk(public_key, as_dict=True)
    return jwk | {"kid": thumbprint(public_key), "use": "sig", "alg": ALGORITHM}


class SigningKeys:
    """The current signing key and the public keys still trusted from before a rotation."""

    def __init__(
        self, private_key: Ed25519PrivateKey, previous: Sequence[Ed25519PublicKey] = ()
    ) -> None:
        """``previous`` are retired keys whose tokens may still be live."""
        self._private = private_key
        self.kid = thumbprint(private_key.public_key())
        self._jwks = {
            "keys": [_jwk(private_key.public_key())]
            + [_jwk(k) for k in previous if thumbprint(k) != self.kid]
        }

    @classmethod
    def from_config(
        cls, *, pem: str | None, seed: str | None, previous_pems: Sequence[str] = ()
    ) -> SigningKeys:
        """From a PEM private key or a 32-byte base64url seed (RFC 8032 private key)."""
        if pem:
            key = serialization.load_pem_private_key(pem.encode(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ValueError("jwt_signing_key must be an Ed25519 private key")
        elif seed:
            raw = decode_b64url(seed)
            if len(raw) != 32:
                raise ValueError("jwt_signing_seed must be 32 bytes, base64url")
            key = Ed25519PrivateKey.from_private_bytes(raw)
        else:
            raise ValueError("no signing key configured")
        previous = []
        for text in previous_pems:
            public = serialization.load_pem_public_key(text.encode())
            if not isinstance(public, Ed25519PublicKey):
                raise ValueError("jwt_previous_public_keys must be Ed25519 public keys")
            previous.append(public)
        return cls(key, previous)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set published at ``/.well-known/jwks.json``."""
        return self._jwks

    def sign(self, claims: dict[str, Any]) -> str:
        """A compact JWS of ``claims`` with this key's ``kid`` in the header."""
        return jwt.encode(claims, self._private, algorithm=ALGORITHM, headers={"kid": self.kid})


@dataclass(frozen=True)
class AccessGrant:
    """What an access token asserts about its bearer."""

    subject: str
    session_id: str
    aal: Aal
    methods: tuple[Method, ...]
    auth_time: datetime


def access_claims(
    grant: AccessGrant, *, issuer: str, audience: str, now: datetime, ttl: timedelta
) -> dict[str, Any]:
    """Registered claims plus ``aal``, ``amr`` (RFC 8176), ``auth_time`` and ``sid``."""
    return {
        "iss": issuer,
        "aud": audience,
        "sub": grant.subject,
        "iat": int(now.timestamp()),
        "nbf": int(now.timestamp()),
        "exp": int((now + ttl).timestamp()),
        "jti": secrets.token_urlsafe(16),
        "sid": grant.session_id,
        "aal": str(grant.aal),
        "amr": [str(m) for m in grant.methods],
        "auth_time": int(grant.auth_time.timestamp()),
    }


def new_refresh_token(session_id: str) -> str:
    """An opaque refresh token: the session id and 256 random bits."""
    return f"{session_id}.{secrets.token_urlsafe(32)}"


def refresh_digest(token: str) -> str:
    """The stored form of a refresh token."""
    return hashlib.sha256(token.encode()).hexdigest()


def session_of(token: str) -> str | None:
    """The session id a refresh token names, or None when it is malformed."""
    session_id, sep, secret = token.partition(".")
    return session_id if sep and session_id and len(secret) >= 32 else None
