"""Who may act: the ``ApprovalAuthority`` port over identity's access tokens.

Loan never issues or stores credentials. It verifies identity's access tokens locally
against identity's JSON Web Key Set (:class:`zerocontact.platform.auth.TokenVerifier`),
and accepting an offer additionally needs a step-up: AAL2 and an authentication at most
``step_up_max_age_s`` old. The port keeps the HTTP edge independent of the token format, so
tests and other deployments can inject another verifier.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from zerocontact.platform.auth import Principal, TokenVerifier, check_step_up


@dataclass(frozen=True, slots=True)
class Caller:
    """The verified bearer of a request."""

    subject: str  # identity's party id of the person
    aal: str
    session_id: str


class ApprovalAuthority(Protocol):
    """Verifies bearer tokens for the loan API."""

    async def authenticate(self, token: str) -> Caller:
        """The caller, or a 401 problem (``InvalidToken``)."""
        ...

    async def authenticate_step_up(self, token: str) -> Caller:
        """The caller if AAL2 and recently authenticated, else a 403 ``step_up_required``."""
        ...


class IdentityTokenAuthority:
    """The default adapter: identity's own verifier (JWKS, EdDSA, issuer, audience)."""

    def __init__(self, verifier: TokenVerifier, *, step_up_max_age_s: float) -> None:
        self._verifier = verifier
        self._max_age = step_up_max_age_s

    @classmethod
    def remote(
        cls, jwks_url: str, *, issuer: str, audience: str, step_up_max_age_s: float
    ) -> IdentityTokenAuthority:
        """Fetch (and cache) identity's key set from ``jwks_url``."""
        verifier = TokenVerifier.remote(jwks_url, issuer=issuer, audience=audience)
        return cls(verifier, step_up_max_age_s=step_up_max_age_s)

    async def authenticate(self, token: str) -> Caller:
        """See :class:`ApprovalAuthority`."""
        return _caller(await self._verifier.verify(token))

    async def authenticate_step_up(self, token: str) -> Caller:
        """See :class:`ApprovalAuthority`."""
        principal = await self._verifier.verify(token)
        check_step_up(principal, self._max_age)
        return _caller(principal)


def _caller(principal: Principal) -> Caller:
    return Caller(principal.subject, principal.aal, principal.session_id)
