"""FastAPI dependencies every service's routes share: idempotency key, bearer, caller, step-up.

The caller dependencies verify identity's access token with the ``TokenVerifier`` the service's
lifespan put on ``app.state.verifier``; step-up reads ``app.state.step_up_max_age_s``.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from zerocontact.platform.auth import InvalidToken, Principal, TokenVerifier, check_step_up

__all__ = ["BearerToken", "Caller", "IdempotencyKey", "SteppedUp", "bearer_token"]

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Client-chosen key; a retry with the same key and request returns the "
        "first result; the same key with a different request is refused.",
    ),
]

_bearer = HTTPBearer(auto_error=False, description="An access token issued by identity")


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    """The request's bearer token (401 problem ``invalid_token`` when there is none)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken("a bearer access token is required")
    return credentials.credentials


BearerToken = Annotated[str, Depends(bearer_token)]


async def _caller(request: Request, token: BearerToken) -> Principal:
    verifier: TokenVerifier = request.app.state.verifier
    return await verifier.verify(token)


Caller = Annotated[Principal, Depends(_caller)]
"""The verified bearer of identity's access token (401 otherwise)."""


async def _stepped_up(request: Request, who: Caller) -> Principal:
    check_step_up(who, float(request.app.state.step_up_max_age_s))
    return who


SteppedUp = Annotated[Principal, Depends(_stepped_up)]
"""AAL2 with a recent authentication (403 ``step_up_required`` otherwise)."""
