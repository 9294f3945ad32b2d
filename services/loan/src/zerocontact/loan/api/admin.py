"""``/v1/admin``: operators' tools (the ``X-Operator-Key`` credential on every route)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request

from zerocontact.loan import handlers
from zerocontact.loan.api.deps import ResourceId, deps_of, money_of, operator
from zerocontact.loan.api.schemas import LoanView, OverdueScanRequest, RepaymentView, RepayRequest
from zerocontact.platform.deps import IdempotencyKey

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(operator)])


@router.post("/overdue-scans")
async def run_overdue_scan(
    body: OverdueScanRequest,
    request: Request,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    """Run overdue detection as of a day (default today). Idempotent by nature: a loan
    already in its bucket emits nothing, so the key is accepted but not needed."""
    as_of = body.as_of or datetime.now(UTC).date()
    found = await handlers.scan_overdue(as_of=as_of, deps=deps_of(request))
    return {
        "as_of": as_of.isoformat(),
        "entered_bucket": [
            {"loan_id": t.loan_id, "bucket": str(t.bucket), "days_past_due": t.days_past_due}
            for t in found
        ],
    }


@router.post("/loans/{loan_id}/disbursement")
async def retry_disbursement(loan_id: ResourceId, request: Request) -> LoanView:
    """Drive a BOOKED loan's disbursement now (idempotent: pays at most once)."""
    return LoanView.of(await handlers.disburse_loan(loan_id, deps=deps_of(request)))


@router.post("/loans/{loan_id}/repayments")
async def repay_as_of(
    loan_id: ResourceId,
    body: RepayRequest,
    key: IdempotencyKey,
    request: Request,
    as_of: Annotated[date | None, Query(description="value date (back office)")] = None,
) -> RepaymentView:
    """A back-office repayment with a value date (e.g. a payment received at a branch)."""
    result = await handlers.repay(
        loan_id=loan_id,
        repayment_id=key,
        amount=money_of(body.amount, body.currency, "body.amount"),
        subject=None,
        deps=deps_of(request),
        as_of=as_of,
    )
    return RepaymentView.of(result)
