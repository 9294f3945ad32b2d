"""The access-token verifier's cache of verified tokens: it saves the signature check, never a
check's outcome (expiry, a withdrawn key, a changed token)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm

from zerocontact.platform.auth import InvalidToken, TokenVerifier

ISSUER, AUDIENCE = "https://identity.test", "zerocontact"


class Keys:
    """An in-memory JWKS publisher that counts fetches."""

    def __init__(self) -> None:
        self.private = Ed25519PrivateKey.generate()
        jwk: dict[str, Any] = OKPAlgorithm.to_jwk(self.private.public_key(), as_dict=True)
        self.published: dict[str, Any] = {"keys": [{**jwk, "kid": "k1", "alg": "EdDSA"}]}
        self.fetches = 0

    async def jwks(self) -> dict[str, Any]:
        self.fetches += 1
        return self.published

    def token(self, *, exp_in: float = 300, subject: str = "party-1") -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER, "aud": AUDIENCE, "sub": subject, "iat": now, "nbf": now,
            "exp": int(now + exp_in), "jti": f"j{now}{subject}", "sid": "s1", "aal": "AAL2",
            "amr": ["pwd", "otp"], "auth_time": now,
        }  # fmt: skip
        return jwt.encode(claims, self.private, algorithm="EdDSA", headers={"kid": "k1"})


def verifier(keys: Keys, **options: Any) -> TokenVerifier:
    return TokenVerifier(keys.jwks, issuer=ISSUER, audience=AUDIENCE, **options)


async def test_a_verified_token_is_answered_from_the_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = Keys()
    v = verifier(keys)
    token = keys.token()
    first = await v.verify(token)
    # A second presentation must not reach the signature check.
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("verified again"))
    assert await v.verify(token) == first
    assert first.subject == "party-1"


async def test_a_changed_token_is_verified_and_refused() -> None:
    keys = Keys()
    v = verifier(keys)
    token = keys.token()
    await v.verify(token)
    header, payload, signature = token.split(".")
    # one character changed mid-signature (the last one carries padding bits, and changing it
    # to a character with the same significant bits left the signature valid)
    changed = "A" if signature[10] != "A" else "B"
    forged = f"{header}.{payload}.{signature[:10]}{changed}{signature[11:]}"
    with pytest.raises(InvalidToken):
        await v.verify(forged)


async def test_an_expired_token_is_not_served_from_the_cache() -> None:
    keys = Keys()
    v = verifier(keys, leeway_s=0)
    token = keys.token(exp_in=2)
    principal = await v.verify(token)
    # Past exp: the cache must not answer, and the full check refuses.
    await asyncio.sleep(principal.expires_at.timestamp() - time.time() + 0.2)
    with pytest.raises(InvalidToken, match="expired"):
        await v.verify(token)


async def test_a_withdrawn_key_stops_cached_tokens_at_the_next_key_set_fetch() -> None:
    keys = Keys()
    v = verifier(keys, cache_ttl_s=0.05)
    token = keys.token()
    await v.verify(token)
    # identity withdrew k1 (e.g. a compromised key) and publishes k2 only
    keys.published = {"keys": [{**keys.published["keys"][0], "kid": "k2"}]}
    await asyncio.sleep(0.1)
    with pytest.raises(InvalidToken, match="unknown key"):
        await v.verify(token)
    assert keys.fetches >= 2


async def test_the_cache_is_bounded() -> None:
    keys = Keys()
    v = verifier(keys, verified_cache_size=2)
    tokens = [keys.token(subject=f"party-{i}") for i in range(3)]
    for token in tokens:
        await v.verify(token)
    assert v._verified is not None
    assert len(v._verified) == 2 and tokens[0] not in v._verified


async def test_an_expired_token_leaves_the_cache_when_it_is_next_written() -> None:
    """The cache holds the tokens in use, not every token seen until the bound is reached."""
    keys = Keys()
    v = verifier(keys, leeway_s=0)
    short = keys.token(exp_in=2, subject="party-short")
    principal = await v.verify(short)
    await asyncio.sleep(principal.expires_at.timestamp() - time.time() + 0.2)
    await v.verify(keys.token(subject="party-next"))
    assert v._verified is not None
    assert len(v._verified) == 1 and short not in v._verified


async def test_a_cache_of_size_zero_verifies_every_presentation(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    keys = Keys()
    v = verifier(keys, verified_cache_size=0)
    token = keys.token()
    await v.verify(token)
    monkeypatch.setattr(jwt, "decode", lambda *a, **k: pytest.fail("verified again"))
    with pytest.raises(pytest.fail.Exception):
        await v.verify(token)
