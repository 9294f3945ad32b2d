"""Access-token verification for every service: JWKS, assurance levels and step-up.

Other services build one :class:`TokenVerifier` with identity's JWKS URL and use its
FastAPI dependencies::

    verifier = TokenVerifier.remote("http://identity:8001/.well-known/jwks.json",
                                    issuer=..., audience="zerocontact")
    @router.post("/v1/loans/{loan_id}/acceptance")
    async def accept(principal: Annotated[Principal, Depends(verifier.require_step_up(300))]): ...

Keys are cached; an unknown ``kid`` refetches the set (at most once per
``min_refresh_interval_s``), which is how a key rotation reaches verifiers. Verification is
local and stateless: a revoked session's access tokens stay valid until they expire (minutes).

A token that passed every check is remembered (by its exact text, up to ``verified_cache_size``
tokens) until its ``exp``: a client reading with the same token again costs a dictionary
look-up instead of an Ed25519 verification. The cache is emptied whenever the key set is
fetched again, so a key withdrawn from the JWKS stops its tokens as soon as it did before.
"""

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import httpx
import jwt
from cachetools import TLRUCache
from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from zerocontact.platform.errors import DomainError, Forbidden, Unauthenticated

# No ``from __future__ import annotations`` here: FastAPI must evaluate the dependencies'
# annotations, which name closures' local variables.

__all__ = [
    "CredentialRequired",
    "InvalidToken",
    "Principal",
    "StepUpRequired",
    "TokenVerifier",
    "check_step_up",
    "shared_credential",
]

JwksSource = Callable[[], Awaitable[dict[str, Any]]]
_bearer = HTTPBearer(auto_error=False, description="An access token issued by identity")


class InvalidToken(Unauthenticated):
    """A bearer or refresh token is missing, malformed, expired or revoked."""

    code = "invalid_token"


class StepUpRequired(Forbidden):
    """The operation needs AAL2 and a recent authentication."""

    code = "step_up_required"


class CredentialRequired(Forbidden):
    """A shared service credential (an ``X-...-Key`` header) is missing or wrong."""

    code = "credential_required"


def shared_credential(
    header: str,
    secret: Callable[[Request], SecretStr],
    *,
    refusal: Callable[[], DomainError] | None = None,
) -> Callable[..., Awaitable[None]]:
    """A FastAPI dependency that admits a request only if ``header`` equals ``secret(request)``.

    For back-office and machine callers that share one credential (an operator console, the
    SMS gateway). The comparison is constant-time; a missing or wrong value raises
    ``refusal()`` (a 403 :class:`CredentialRequired` by default), whose detail never echoes
    what was presented. ``secret`` reads the setting per request, so tests and rotations see
    the app's current settings::

        operator = shared_credential(
            "X-Operator-Key", lambda r: r.app.state.deps.settings.operator_key
        )
        router = APIRouter(dependencies=[Depends(operator)])
    """
    scheme = APIKeyHeader(name=header, scheme_name=header, auto_error=False)

    def refuse() -> DomainError:
        return (
            refusal()
            if refusal is not None
            else CredentialRequired(f"a valid {header} is required")
        )

    async def check(
        request: Request, presented: Annotated[str | None, Security(scheme)] = None
    ) -> None:
        expected = secret(request).get_secret_value().encode()
        # An empty setting admits nobody (compare_digest(b"", b"") would be True).
        if not presented or not expected or not hmac.compare_digest(presented.encode(), expected):
            raise refuse()

    return check


@dataclass(frozen=True)
class Principal:
    """The verified bearer of an access token."""

    subject: str
    session_id: str
    aal: str
    methods: tuple[str, ...]
    auth_time: datetime
    expires_at: datetime
    token_id: str

    def authenticated_within(self, max_age_s: float, *, now: datetime | None = None) -> bool:
        """True when the last authentication is at most ``max_age_s`` old."""
        moment = now or datetime.now(UTC)
        return (moment - self.auth_time).total_seconds() <= max_age_s


def _until_exp(_token: str, entry: tuple["Principal", float], _now: float) -> float:
    """A verified token's place in the cache ends at its ``exp`` (a UNIX time)."""
    return entry[1]


class TokenVerifier:
    """Verifies identity's access tokens against its JSON Web Key Set."""

    def __init__(
        self,
        jwks: JwksSource,
        *,
        issuer: str,
        audience: str,
        cache_ttl_s: float = 300.0,
        min_refresh_interval_s: float = 10.0,
        leeway_s: float = 5.0,
        verified_cache_size: int = 10_000,
    ) -> None:
        """``jwks`` returns the key set (over HTTP for other services, in-process for identity);
        ``verified_cache_size`` = 0 verifies every presentation from scratch."""
        self._source = jwks
        self._issuer = issuer
        self._audience = audience
        self._cache_ttl = cache_ttl_s
        self._min_refresh = min_refresh_interval_s
        self._leeway = leeway_s
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        # token text -> (its principal, its exp as a UNIX time); only tokens that verified, and
        # only until their exp: a token that expired is dropped when the cache is next written,
        # so it holds the tokens in use, not every token seen until the bound is reached (a
        # soak's 30 minutes of new customers grew the loan service by thousands of dead ones).
        self._verified: TLRUCache[str, tuple[Principal, float]] | None = (
            TLRUCache(maxsize=verified_cache_size, ttu=_until_exp, timer=time.time)
            if verified_cache_size > 0
            else None
        )

    @classmethod
    def remote(
        cls,
        jwks_url: str,
        *,
        issuer: str,
        audience: str,
        client: httpx.AsyncClient | None = None,
        **options: Any,  # the constructor's keyword options
    ) -> "TokenVerifier":
        """A verifier that fetches the key set from ``jwks_url``."""

        async def fetch() -> dict[str, Any]:
            if client is not None:
                response = await client.get(jwks_url)
            else:
                async with httpx.AsyncClient(timeout=5.0) as own:
                    response = await own.get(jwks_url)
            response.raise_for_status()
            body: dict[str, Any] = response.json()
            return body

        return cls(fetch, issuer=issuer, audience=audience, **options)

    async def _refresh(self, *, force: bool) -> None:
        async with self._lock:
            age = time.monotonic() - self._fetched_at
            if age < (self._min_refresh if force else self._cache_ttl):
                return
            key_set = jwt.PyJWKSet.from_dict(await self._source())
            self._keys = {k.key_id: k for k in key_set.keys if k.key_id}
            self._fetched_at = time.monotonic()
            # A key may have been withdrawn: what it signed is verified again against the new set.
            if self._verified is not None:
                self._verified.clear()

    async def _key(self, kid: str) -> jwt.PyJWK:
        await self._refresh(force=False)
        if kid not in self._keys:
            await self._refresh(force=True)  # a rotation: the new key may be published now
        try:
            return self._keys[kid]
        except KeyError:
            raise InvalidToken("token signed by an unknown key") from None

    async def verify(self, token: str) -> Principal:
        """Check signature, issuer, audience and times; raise :class:`InvalidToken` if bad."""
        # Only within its exp (no leeway: a token near its end takes the full path again).
        cached = self._verified.get(token) if self._verified is not None else None
        if cached is not None:
            if time.monotonic() - self._fetched_at >= self._cache_ttl:
                await self._refresh(force=False)  # empties the cache when it fetches
            if self._verified is not None and token in self._verified:
                return cached[0]
        principal = await self._verify(token)
        if self._verified is not None:  # the least recently used goes when it is full
            self._verified[token] = (principal, principal.expires_at.timestamp())
        return principal

    async def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidToken("malformed token") from None
        kid = header.get("kid")
        if not isinstance(kid, str) or header.get("alg") != "EdDSA":
            raise InvalidToken("token has no usable key id or algorithm")
        key = await self._key(kid)
        try:
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["EdDSA"],
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": ["exp", "iat", "sub", "sid", "aal", "auth_time", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("token expired") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidToken(f"token rejected: {exc}") from None
        return Principal(
            subject=str(claims["sub"]),
            session_id=str(claims["sid"]),
            aal=str(claims["aal"]),
            methods=tuple(str(m) for m in claims.get("amr", [])),
            auth_time=datetime.fromtimestamp(int(claims["auth_time"]), UTC),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC),
            token_id=str(claims["jti"]),
        )

    def authenticated(self) -> Callable[..., Awaitable[Principal]]:
        """A FastAPI dependency: the verified bearer, or a 401 problem."""

        async def dependency(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> Principal:
            if credentials is None or credentials.scheme.lower() != "bearer":
                raise InvalidToken("a bearer access token is required")
            return await self.verify(credentials.credentials)

        return dependency

    def require_step_up(self, max_age_s: float) -> Callable[..., Awaitable[Principal]]:
        """A FastAPI dependency for sensitive operations: AAL2 and an authentication at most
        ``max_age_s`` old, else a 403 problem with code ``step_up_required``."""
        authenticated = self.authenticated()

        async def dependency(principal: Annotated[Principal, Depends(authenticated)]) -> Principal:
            check_step_up(principal, max_age_s)
            return principal

        return dependency


def check_step_up(principal: Principal, max_age_s: float) -> None:
    """Raise :class:`StepUpRequired` unless the principal is AAL2 and recently authenticated."""
    if principal.aal != "AAL2":
        raise StepUpRequired(
            "this operation needs two-factor authentication (AAL2)",
            required_aal="AAL2",
            current_aal=principal.aal,
            max_age_s=max_age_s,
        )
    if not principal.authenticated_within(max_age_s):
        raise StepUpRequired(
            f"this operation needs an authentication in the last {int(max_age_s)} seconds",
            required_aal="AAL2",
            current_aal=principal.aal,
            max_age_s=max_age_s,
        )
