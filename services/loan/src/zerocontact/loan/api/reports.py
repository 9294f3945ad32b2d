"""``/v1/merchant-revenue-reports``: partner platforms report merchants' sales."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from zerocontact.loan import handlers
from zerocontact.loan.api.deps import deps_of, money_of
from zerocontact.loan.api.schemas import RevenueReportRequest
from zerocontact.platform.deps import IdempotencyKey

router = APIRouter(prefix="/v1/merchant-revenue-reports", tags=["merchant revenue"])


@router.post("", status_code=202)
async def report_revenue(
    body: RevenueReportRequest, key: IdempotencyKey, request: Request
) -> dict[str, Any]:
    """A partner platform reports a merchant's sales (idempotent by platform and report id;
    the gateway authenticates the partner)."""
    added = await handlers.report_revenue(
        report_id=body.report_id,
        party_id=body.party_id,
        platform_id=body.platform_id,
        revenue=money_of(body.revenue, body.currency, "body.revenue"),
        period_start=body.period_start,
        period_end=body.period_end,
        deps=deps_of(request),
    )
    return {"report_id": body.report_id, "accepted": True, "duplicate": not added}
