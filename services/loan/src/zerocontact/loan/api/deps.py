"""What the loan routes share: the handlers' dependencies, the caller, the operator credential,
path ids and money from a request body."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from fastapi import Depends, Path, Request
from pydantic import SecretStr

from zerocontact.loan.authority import ApprovalAuthority, Caller
from zerocontact.loan.handlers import LoanDeps
from zerocontact.platform.auth import shared_credential
from zerocontact.platform.deps import BearerToken
from zerocontact.platform.errors import Forbidden, Invalid
from zerocontact.platform.money import InvalidAmount, Money, UnknownCurrency

__all__ = [
    "Authenticated",
    "InvalidMoney",
    "OperatorOnly",
    "ResourceId",
    "SteppedUpCaller",
    "caller",
    "deps_of",
    "money_of",
    "operator",
    "step_up_caller",
]

ResourceId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


class InvalidMoney(Invalid):
    """An amount the currency cannot represent."""

    code = "invalid_amount"


class OperatorOnly(Forbidden):
    """The admin API needs the operator credential."""

    code = "operator_only"


def deps_of(request: Request) -> LoanDeps:
    """The handlers' dependencies built in the lifespan."""
    deps: LoanDeps = request.app.state.deps.loan
    return deps


def _authority(request: Request) -> ApprovalAuthority:
    authority: ApprovalAuthority = request.app.state.deps.authority
    return authority


async def caller(request: Request, token: BearerToken) -> Caller:
    """Any verified bearer (AAL1 is enough to apply and to read)."""
    return await _authority(request).authenticate(token)


async def step_up_caller(request: Request, token: BearerToken) -> Caller:
    """A bearer with AAL2 and a recent authentication (to accept an offer)."""
    return await _authority(request).authenticate_step_up(token)


Authenticated = Annotated[Caller, Depends(caller)]
SteppedUpCaller = Annotated[Caller, Depends(step_up_caller)]


def _operator_key(request: Request) -> SecretStr:
    key: SecretStr = request.app.state.deps.settings.operator_key
    return key


# The operator credential of the admin API.
operator = shared_credential(
    "X-Operator-Key",
    _operator_key,
    refusal=lambda: OperatorOnly("the admin API needs the operator credential"),
)


def money_of(amount: Decimal, currency: str, field: str) -> Money:
    """``amount`` in ``currency``, or a 422 ``invalid_amount`` naming ``field``."""
    try:
        return Money.of(amount, currency)
    except UnknownCurrency as exc:
        raise InvalidMoney("unknown currency", field="body.currency") from exc
    except InvalidAmount as exc:
        # The message names the rule, never the value (422 bodies do not echo input).
        raise InvalidMoney(f"more decimal places than {currency} has", field=field) from exc
