"""``/v1/applications``: apply, read the decision, accept the offer."""

from __future__ import annotations

from fastapi import APIRouter, Request

from zerocontact.loan import handlers
from zerocontact.loan.api.deps import (
    Authenticated,
    ResourceId,
    SteppedUpCaller,
    deps_of,
    money_of,
)
from zerocontact.loan.api.schemas import ApplicationView, ApplyRequest, LoanView
from zerocontact.platform.deps import IdempotencyKey
from zerocontact.platform.errors import NotFound

router = APIRouter(prefix="/v1/applications", tags=["applications"])


@router.post("", status_code=202)
async def apply(
    body: ApplyRequest,
    key: IdempotencyKey,
    request: Request,
    who: Authenticated,
) -> ApplicationView:
    """Apply for a loan; decided automatically once the risk assessment arrives."""
    deps = deps_of(request)
    await handlers.authorize(deps, party_id=body.party_id, subject=who.subject)
    app = await handlers.submit_application(
        handlers.SubmitApplication(
            idem_key=key,
            party_id=body.party_id,
            product_id=body.product_id,
            amount=money_of(body.amount, body.currency, "body.amount"),
            term_months=body.term_months,
            purpose=body.purpose,
            device_id=body.device_id,
            source_address=body.source_address
            or (request.client.host if request.client else "unknown"),
        ),
        deps=deps,
    )
    return ApplicationView.of(app)


@router.get("/{application_id}")
async def get_application(
    application_id: ResourceId, request: Request, who: Authenticated
) -> ApplicationView:
    """An application with its decision and reasons."""
    deps = deps_of(request)
    app = await deps.repo.application(application_id)
    if app is None:
        raise NotFound(f"application {application_id} does not exist")
    await handlers.authorize(deps, party_id=app.party_id, subject=who.subject)
    return ApplicationView.of(app)


@router.post("/{application_id}/acceptance")
async def accept(
    application_id: ResourceId,
    key: IdempotencyKey,
    request: Request,
    who: SteppedUpCaller,
) -> LoanView:
    """Accept the approved offer (AAL2, recent authentication): the loan is booked and paid
    out. Accepting again returns the same loan; the money moves once."""
    loan = await handlers.accept_offer(
        application_id=application_id,
        subject=who.subject,
        deps=deps_of(request),
    )
    return LoanView.of(loan)
