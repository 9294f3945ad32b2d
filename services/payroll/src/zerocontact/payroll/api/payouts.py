"""Gig payouts and payslips: what reaches the payees."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from zerocontact.payroll import handlers
from zerocontact.payroll.api.deps import Caller, Ctx, IdempotencyKey, MalformedInput, PartyId
from zerocontact.payroll.api.views import GigPayoutRequest, gig_view
from zerocontact.platform.money import InvalidAmount, Money

router = APIRouter(prefix="/v1", tags=["payroll"])


@router.get("/me/payslips")
async def my_payslips(who: Caller, ctx: Ctx) -> list[dict[str, Any]]:
    """The caller's payslips (items whose customer_id is the token's subject), newest first."""
    return [
        {
            "batch_id": slip.batch_id,
            "employer_id": slip.employer_id,
            "end_to_end_id": slip.end_to_end_id,
            "currency": slip.currency,
            "gross": str(Money(slip.currency, slip.gross_minor).to_decimal()),
            "deductions": {
                k: str(Money(slip.currency, v).to_decimal())
                for k, v in slip.deductions_minor.items()
            },
            "net": str(Money(slip.currency, slip.net_minor).to_decimal()),
            "card": slip.card_masked,
            "state": slip.state,
        }
        for slip in await handlers.payslips(ctx, who.subject)
    ]


@router.post("/employers/{employer_id}/gig-payouts", status_code=201)
async def gig_payout(
    employer_id: PartyId, body: GigPayoutRequest, key: IdempotencyKey, who: Caller, ctx: Ctx
) -> dict[str, Any]:
    """Pay a gig worker: income tax withheld (simplified table, docs/payroll.md), net paid."""
    try:
        gross = Money.of(body.gross, ctx.currency)
    except InvalidAmount as exc:
        raise MalformedInput(str(exc), field="gross") from None
    payout = await handlers.pay_gig(
        ctx,
        handlers.GigPayout(
            employer_id, body.payee_name, body.card_number, gross, body.task_reference, key
        ),
        principal=who,
    )
    return gig_view(payout)
