"""Loan's events on profiles, and the loan-not-accepted reminders they keep."""

from __future__ import annotations

from datetime import UTC, timedelta
from typing import TYPE_CHECKING, Any

from bson import Int64

from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.marketing.profiles import count_update
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.money import Money

if TYPE_CHECKING:
    from zerocontact.marketing.consumers.projector import Projector


async def on_loan(p: Projector, consumed: ConsumedEvent, event: loan_pb.LoanEvent) -> None:
    """Loan events on the applicant's profile; approvals keep a reminder, acceptance drops it."""
    kind = event.WhichOneof("event")
    at = consumed.event.time
    if kind == "loan_application_submitted":
        e = event.loan_application_submitted
        await p.apply(consumed, e.party_id, {"$inc": count_update("loan_applied", at, p.tz)})
    elif kind == "loan_approved":
        a = event.loan_approved
        # The decision's own time, not the record's: the reminder counts from it.
        decided = a.decided_at.ToDatetime(tzinfo=UTC) if a.HasField("decided_at") else at
        loan = {
            "state": "approved",
            "amount_minor": Int64(Money.from_proto(a.offered_amount).minor_units),
            "limit_minor": Int64(Money.from_proto(a.credit_limit).minor_units)
            if a.HasField("credit_limit")
            else Int64(0),
            "annual_rate": a.annual_rate,
            "approved_at": a.decided_at.ToDatetime(tzinfo=UTC),
        }
        applied = await p.apply(
            consumed,
            a.party_id,
            {
                "$set": {f"loans.{a.application_id}": loan},
                "$inc": count_update("loan_approved", at, p.tz),
            },
        )
        if applied is not None:
            await p.repo.add_reminder(a.application_id, a.party_id, decided)
    elif kind == "loan_offer_accepted":
        e2 = event.loan_offer_accepted
        applied = await p.apply(
            consumed,
            e2.party_id,
            {
                "$set": {
                    f"loans.{e2.application_id}.state": "accepted",
                    f"loans.{e2.application_id}.loan_id": e2.loan_id,
                },
                "$inc": count_update("loan_accepted", at, p.tz),
            },
        )
        if applied is not None:
            reminder = await p.repo.drop_reminder(e2.application_id)
            for cid in (reminder or {}).get("fired", {}):
                await p.repo.mark_converted(cid, e2.party_id, at)
    elif kind == "loan_disbursed":
        d = event.loan_disbursed
        await p.apply(
            consumed, d.party_id, {"$set": {f"loans.{d.application_id}.state": "disbursed"}}
        )
    elif kind == "loan_settled":
        st = event.loan_settled
        await p.apply(consumed, st.party_id, {"$set": {f"settled_loans.{st.loan_id}": True}})
    elif kind == "repayment_received":
        r = event.repayment_received
        await p.apply(consumed, r.party_id, {"$inc": count_update("loan_repaid", at, p.tz)})


async def fire_due_reminders(projector: Projector) -> int:
    """Send loan-not-accepted reminders that are due; how many offers were attempted."""
    now = projector.clock()
    campaigns = (await projector.book.current()).campaigns_for("loan_not_accepted")
    if not campaigns:
        return 0
    shortest = min(t.after_minutes for _, t in campaigns)
    attempted = 0
    for reminder in await projector.repo.due_reminders(now - timedelta(minutes=shortest)):
        fired: dict[str, Any] = reminder.get("fired") or {}
        approved_at = reminder["approved_at"]
        if approved_at.tzinfo is None:
            approved_at = approved_at.replace(tzinfo=now.tzinfo)
        for campaign, trigger in campaigns:
            if campaign.id in fired or approved_at + timedelta(minutes=trigger.after_minutes) > now:
                continue
            # Mark first: a reminder is at most once per campaign even if the send crashes.
            if not await projector.repo.mark_reminder_fired(reminder["_id"], campaign.id, now):
                continue
            profile = await projector.repo.raw_profile(reminder["party_id"])
            # The trigger is the moment the offer had gone unaccepted for long enough.
            due = approved_at + timedelta(minutes=trigger.after_minutes)
            await projector.outreach.offer(
                campaign, reminder["party_id"], profile, cause="loan_not_accepted", triggered_at=due
            )
            attempted += 1
    return attempted
