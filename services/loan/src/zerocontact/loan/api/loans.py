"""``/v1/loans``: a loan with its schedule, the payoff quote, repayments."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request

from zerocontact.loan import handlers
from zerocontact.loan.api.deps import Authenticated, ResourceId, deps_of, money_of
from zerocontact.loan.api.schemas import LoanView, RepaymentView, RepayRequest
from zerocontact.platform.deps import IdempotencyKey
from zerocontact.platform.errors import NotFound

router = APIRouter(prefix="/v1/loans", tags=["loans"])


@router.get("/{loan_id}")
async def get_loan(loan_id: ResourceId, request: Request, who: Authenticated) -> LoanView:
    """A loan with its schedule and what has been paid."""
    deps = deps_of(request)
    loan = await deps.repo.loan(loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} does not exist")
    await handlers.authorize(deps, party_id=loan.party_id, subject=who.subject)
    return LoanView.of(loan)


@router.get("/{loan_id}/payoff")
async def get_payoff(loan_id: ResourceId, request: Request, who: Authenticated) -> dict[str, str]:
    """What settles the loan today (early payoff: interest to today, future interest waived)."""
    deps = deps_of(request)
    loan = await deps.repo.loan(loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} does not exist")
    await handlers.authorize(deps, party_id=loan.party_id, subject=who.subject)
    today = datetime.now(UTC).date()
    amount = handlers.payoff_quote(loan, as_of=today)
    return {
        "loan_id": loan.id,
        "as_of": today.isoformat(),
        "amount": str(amount.to_decimal()),
        "currency": amount.currency,
    }


@router.post("/{loan_id}/repayments")
async def repay(
    loan_id: ResourceId,
    body: RepayRequest,
    key: IdempotencyKey,
    request: Request,
    who: Authenticated,
) -> RepaymentView:
    """Repay from the borrower's settlement account: scheduled, partial or the payoff amount.
    The idempotency key is the repayment id."""
    result = await handlers.repay(
        loan_id=loan_id,
        repayment_id=key,
        amount=money_of(body.amount, body.currency, "body.amount"),
        subject=who.subject,
        deps=deps_of(request),
    )
    return RepaymentView.of(result)
