"""Merchant revenue reports from partner platforms."""

from __future__ import annotations

from datetime import UTC, datetime

from zerocontact.loan import events
from zerocontact.loan.domain import loans as domain
from zerocontact.loan.domain.errors import IdempotencyConflict
from zerocontact.loan.handlers.context import LoanDeps, not_yet_known
from zerocontact.loan.repository import REVENUE_REPORTS
from zerocontact.platform.money import Money


async def report_revenue(
    *,
    report_id: str,
    party_id: str,
    platform_id: str,
    revenue: Money,
    period_start: datetime,
    period_end: datetime,
    deps: LoanDeps,
) -> bool:
    """Emit MerchantRevenueReported once per (platform, report id); False for a retry."""
    known = await deps.party_waits.until(
        party_id, lambda: deps.repo.party_known(party_id), lambda k: k[0]
    )
    if not known.value[0]:
        raise not_yet_known(deps, party_id)
    request = domain.fingerprint(
        party_id, revenue, period_start.isoformat(), period_end.isoformat()
    )
    now = datetime.now(UTC)
    event = events.revenue_reported(
        report_id=report_id,
        party_id=party_id,
        platform_id=platform_id,
        revenue=revenue,
        period_start=period_start,
        period_end=period_end,
        now=now,
        topic=deps.topic,
    )
    key = f"{platform_id}:{report_id}"
    added, first = await deps.repo.add_revenue_report(
        key,
        request=request,
        fields={"party_id": party_id, "platform_id": platform_id, "reported_at": now},
        events=[event],
    )
    if not added and first != request:
        raise IdempotencyConflict(f"report {report_id} was sent before with other figures")
    if added:
        deps.relay.nudge(REVENUE_REPORTS, key)
    return added
