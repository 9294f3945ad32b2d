"""Payroll's events on profiles: salaries (per local month) and the salary triggers."""

from __future__ import annotations

from datetime import UTC
from typing import TYPE_CHECKING, Any

from bson import Int64
from prometheus_client import Counter

from zerocontact.marketing.domain.triggers import salary_fires
from zerocontact.marketing.profiles import count_update, facts, month_key
from zerocontact.marketing.repository import payee_link_id
from zerocontact.payroll.v1 import events_pb2 as payroll_pb
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.money import Money

if TYPE_CHECKING:
    from zerocontact.marketing.consumers.projector import Projector

UNLINKED_SALARIES = Counter(
    "zc_marketing_unlinked_salaries_total",
    "SalaryPaid events whose payee is linked to no party (no trigger possible)",
)
SALARY_CURRENCY = "CNY"


async def on_payroll(p: Projector, consumed: ConsumedEvent, event: payroll_pb.PayrollEvent) -> None:
    """SalaryPaid: count it and the month's salary on the payee's profile; salary triggers."""
    if event.WhichOneof("event") != "salary_paid":
        return
    paid = event.salary_paid
    # The employer's own link (payee_party_id) first; else one registered here.
    party_id = paid.payee_party_id
    if not party_id:
        linked = await p.repo.linked_party(payee_link_id(paid.employer_id, paid.card_masked))
        if linked is None:
            UNLINKED_SALARIES.inc()
            return
        party_id = linked
    amount = Money.from_proto(paid.amount)
    at = paid.paid_at.ToDatetime(tzinfo=UTC)
    update: dict[str, Any] = {"$inc": count_update("salary_paid", at, p.tz)}
    if amount.currency == SALARY_CURRENCY:
        update["$inc"][f"salary.{month_key(at, p.tz)}"] = Int64(amount.minor_units)
        update["$inc"]["salary_total_minor"] = Int64(amount.minor_units)
    profile = await p.apply(consumed, party_id, update)
    if profile is None:
        return
    month = int(facts(profile, now=p.clock(), time_zone=p.tz).attributes["salary_month_minor"] or 0)
    for campaign, trigger in (await p.book.current()).campaigns_for("salary_paid"):
        if salary_fires(trigger, month):
            await p.outreach.offer(
                campaign, party_id, profile, cause="salary_paid", triggered_at=consumed.event.time
            )
