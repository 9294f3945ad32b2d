"""What the assistant's routes share: the handlers' dependencies, the customer (identity's
access token, verified against its JWKS as loan verifies it), the back office's credential
and operator id, path ids."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request
from pydantic import SecretStr

from zerocontact.assistant.handlers import AssistantDeps
from zerocontact.platform.auth import shared_credential

__all__ = [
    "OPERATOR_ID",
    "Id",
    "Operator",
    "deps_of",
    "operator_id",
    "operator_key",
]

Id = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
# A back-office user id: short and plain, as it is stored and published in hand-off events.
OPERATOR_ID = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


def deps_of(request: Request) -> AssistantDeps:
    """The handlers' dependencies built in the lifespan."""
    deps: AssistantDeps = request.app.state.deps
    return deps


def _operator_key(request: Request) -> SecretStr:
    key: SecretStr = request.app.state.deps.settings.operator_key
    return key


operator_key = shared_credential("X-Operator-Key", _operator_key)


async def operator_id(
    value: Annotated[
        str,
        Header(
            alias="X-Operator-Id",
            pattern=OPERATOR_ID,
            description="The back-office user making the call (recorded in hand-off events).",
        ),
    ],
) -> str:
    """The operator the back office acts for."""
    return value


Operator = Annotated[str, Depends(operator_id)]
