"""Authentication factors of a customer: TOTP enrolment and confirmation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse

from zerocontact.identity.api.deps import Ctx, RequestClient, idempotent
from zerocontact.identity.api.schemas import (
    RecoveryCodesView,
    TotpConfirmRequest,
    TotpEnrolmentView,
)
from zerocontact.identity.handlers import authentication
from zerocontact.platform.deps import Caller, IdempotencyKey

router = APIRouter(prefix="/v1/customers/{customer_id}/factors", tags=["factors"])
CustomerId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]


@router.post("/totp", status_code=201, response_model=TotpEnrolmentView)
async def enrol_totp(
    customer_id: CustomerId, key: IdempotencyKey, request: Request, caller: Caller, ctx: Ctx
) -> JSONResponse:
    """Start TOTP enrolment: an otpauth:// URI for the authenticator app. Replacing an
    enrolled authenticator needs step-up (AAL2, recent)."""

    async def run() -> TotpEnrolmentView:
        enrolment = await authentication.enrol_totp(customer_id, principal=caller, ctx=ctx)
        return TotpEnrolmentView(otpauth_uri=enrolment.otpauth_uri, secret=enrolment.secret)

    return await idempotent(
        request, key=key, scope=f"POST totp {caller.subject}", payload=customer_id, run=run,
        status_code=201,
    )  # fmt: skip


@router.post("/totp/confirmation", response_model=RecoveryCodesView)
async def confirm_totp(
    customer_id: CustomerId, body: TotpConfirmRequest, key: IdempotencyKey, request: Request,
    caller: Caller, client: RequestClient, ctx: Ctx,
) -> JSONResponse:  # fmt: skip
    """Confirm the enrolment with a current code; returns single-use recovery codes once."""

    async def run() -> RecoveryCodesView:
        codes = await authentication.confirm_totp(
            customer_id, code=body.code, principal=caller, client=client, ctx=ctx
        )
        return RecoveryCodesView(recovery_codes=codes)

    return await idempotent(
        request, key=key, scope=f"POST totp confirmation {caller.subject}",
        payload=[customer_id, body.code], run=run,
    )  # fmt: skip
