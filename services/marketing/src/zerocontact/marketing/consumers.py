"""Consumers: the profile projection (identity, loan, payroll, marketing, engagement events),
segment membership after each profile change, and the real-time triggers.

Every profile change goes through ``apply_once`` (idempotent by ``ce_id``); triggers run
only when the event was applied for the first time, so a redelivered SalaryPaid makes no
second offer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, timedelta
from typing import Any

from bson import Int64
from prometheus_client import Counter

from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.marketing.book import Book
from zerocontact.marketing.domain.triggers import card_click_fires, salary_fires
from zerocontact.marketing.events import CHANNEL_NAMES
from zerocontact.marketing.outreach import Clock, Outreach
from zerocontact.marketing.profiles import count_update, facts, month_key
from zerocontact.marketing.repository import Repository, payee_link_id
from zerocontact.marketing.segmenting import refresh_membership
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.payroll.v1 import events_pb2 as payroll_pb
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.signals.v1 import engagement_pb2

log = logging.getLogger(__name__)

UNLINKED_SALARIES = Counter(
    "zc_marketing_unlinked_salaries_total",
    "SalaryPaid events whose payee is linked to no party (no trigger possible)",
)
SALARY_CURRENCY = "CNY"


@dataclass
class Projector:
    """Applies consumed events to profiles and fires the triggers they satisfy."""

    repo: Repository
    relay: OutboxRelay
    book: Book
    outreach: Outreach
    settings: MarketingSettings
    clock: Clock

    async def handle(self, consumed: ConsumedEvent) -> None:
        """Route one record by its topic."""
        topic = consumed.topic
        data = consumed.event.data
        s = self.settings
        if topic == s.payroll_topic:
            await self._payroll(consumed, payroll_pb.PayrollEvent.FromString(data))
        elif topic == s.loan_topic:
            await self._loan(consumed, loan_pb.LoanEvent.FromString(data))
        elif topic == s.identity_topic:
            await self._identity(consumed, identity_pb.IdentityEvent.FromString(data))
        elif topic == s.topic:
            await self._marketing(consumed, marketing_pb.MarketingEvent.FromString(data))
        elif topic == s.engagement_topic:
            await self._engagement(consumed, engagement_pb2.EngagementEvent.FromString(data))

    @property
    def _tz(self) -> str:
        return self.settings.default_time_zone

    async def _apply(
        self, consumed: ConsumedEvent, party_id: str, update: dict[str, Any]
    ) -> Document | None:
        """Apply ``update`` once; the profile after it (None if applied before), with
        segment membership brought up to date."""
        if not party_id:
            return None
        update.setdefault("$set", {})["updated_at"] = consumed.event.time
        if not await self.repo.apply_to_profile(party_id, consumed.event.id, update):
            return None
        profile = await self.repo.profile(party_id)
        if profile is None:
            return None
        book = await self.book.current()
        if book.rules:
            joined, left = await refresh_membership(
                self.repo,
                self.relay,
                book.rules,
                profile,
                now=self.clock(),
                time_zone=self._tz,
                topic=self.settings.topic,
            )
            segments = dict(profile.get("segments") or {})
            segments.update({s: True for s in joined})
            for s in left:
                segments.pop(s, None)
            profile["segments"] = segments
        return profile

    async def _payroll(self, consumed: ConsumedEvent, event: payroll_pb.PayrollEvent) -> None:
        if event.WhichOneof("event") != "salary_paid":
            return
        paid = event.salary_paid
        # The employer's own link (payee_party_id) first; else one registered here.
        party_id = paid.payee_party_id
        if not party_id:
            linked = await self.repo.linked_party(payee_link_id(paid.employer_id, paid.card_masked))
            if linked is None:
                UNLINKED_SALARIES.inc()
                return
            party_id = linked
        amount = Money.from_proto(paid.amount)
        at = paid.paid_at.ToDatetime(tzinfo=UTC)
        update: dict[str, Any] = {"$inc": count_update("salary_paid", at, self._tz)}
        if amount.currency == SALARY_CURRENCY:
            update["$inc"][f"salary.{month_key(at, self._tz)}"] = Int64(amount.minor_units)
            update["$inc"]["salary_total_minor"] = Int64(amount.minor_units)
        profile = await self._apply(consumed, party_id, update)
        if profile is None:
            return
        month = int(
            facts(profile, now=self.clock(), time_zone=self._tz).attributes["salary_month_minor"]
            or 0
        )
        for campaign, trigger in (await self.book.current()).campaigns_for("salary_paid"):
            if salary_fires(trigger, month):
                await self.outreach.offer(campaign, party_id, profile, cause="salary_paid")

    async def _loan(self, consumed: ConsumedEvent, event: loan_pb.LoanEvent) -> None:
        kind = event.WhichOneof("event")
        at = consumed.event.time
        if kind == "loan_application_submitted":
            e = event.loan_application_submitted
            await self._apply(
                consumed, e.party_id, {"$inc": count_update("loan_applied", at, self._tz)}
            )
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
            applied = await self._apply(
                consumed,
                a.party_id,
                {
                    "$set": {f"loans.{a.application_id}": loan},
                    "$inc": count_update("loan_approved", at, self._tz),
                },
            )
            if applied is not None:
                await self.repo.add_reminder(a.application_id, a.party_id, decided)
        elif kind == "loan_offer_accepted":
            e2 = event.loan_offer_accepted
            applied = await self._apply(
                consumed,
                e2.party_id,
                {
                    "$set": {
                        f"loans.{e2.application_id}.state": "accepted",
                        f"loans.{e2.application_id}.loan_id": e2.loan_id,
                    },
                    "$inc": count_update("loan_accepted", at, self._tz),
                },
            )
            if applied is not None:
                reminder = await self.repo.drop_reminder(e2.application_id)
                for cid in (reminder or {}).get("fired", {}):
                    await self.repo.mark_converted(cid, e2.party_id, at)
        elif kind == "loan_disbursed":
            d = event.loan_disbursed
            await self._apply(
                consumed, d.party_id, {"$set": {f"loans.{d.application_id}.state": "disbursed"}}
            )
        elif kind == "loan_settled":
            st = event.loan_settled
            await self._apply(
                consumed, st.party_id, {"$set": {f"settled_loans.{st.loan_id}": True}}
            )
        elif kind == "repayment_received":
            r = event.repayment_received
            await self._apply(
                consumed, r.party_id, {"$inc": count_update("loan_repaid", at, self._tz)}
            )

    async def _identity(self, consumed: ConsumedEvent, event: identity_pb.IdentityEvent) -> None:
        kind = event.WhichOneof("event")
        if kind == "customer_registered":
            c = event.customer_registered
            await self._apply(
                consumed,
                c.customer_id,
                {"$set": {"party_kind": "customer", "birth_year": c.birth_year}},
            )
        elif kind == "enterprise_registered":
            e = event.enterprise_registered
            await self._apply(consumed, e.enterprise_id, {"$set": {"party_kind": "enterprise"}})
        elif kind == "kyc_level_changed":
            k = event.kyc_level_changed
            await self._apply(consumed, k.party.party_id, {"$set": {"kyc_level": int(k.to_level)}})

    async def _marketing(self, consumed: ConsumedEvent, event: marketing_pb.MarketingEvent) -> None:
        kind = event.WhichOneof("event")
        at = consumed.event.time
        if kind == "risk_tolerance_assessed":
            r = event.risk_tolerance_assessed
            await self._apply(consumed, r.party_id, {"$set": {"risk_grade": r.grade}})
        elif kind == "contact_preferences_changed":
            p = event.contact_preferences_changed
            await self._apply(
                consumed,
                p.party_id,
                {
                    "$set": {
                        "preferences": {
                            "consented": [CHANNEL_NAMES[c] for c in p.consented_channels],
                            "do_not_contact": p.do_not_contact,
                        }
                    }
                },
            )
        elif kind == "offer_sent":
            o = event.offer_sent
            await self._apply(
                consumed, o.party_id, {"$inc": {f"interactions.{o.campaign_id}.sent": 1}}
            )
        elif kind == "offer_interaction":
            i = event.offer_interaction
            await self._apply(
                consumed,
                i.party_id,
                {
                    "$inc": {
                        f"interactions.{i.campaign_id}.{i.stage}": 1,
                        **count_update(f"offer_{i.stage}", at, self._tz),
                    }
                },
            )
        elif kind == "offer_converted":
            c = event.offer_converted
            await self._apply(
                consumed,
                c.party_id,
                {
                    "$inc": {
                        f"interactions.{c.campaign_id}.converted": 1,
                        **count_update("offer_converted", at, self._tz),
                    }
                },
            )
        elif kind == "studio_activity":
            s = event.studio_activity
            if s.kind not in ("joined", "card_clicked"):
                return
            counted = "studio_joined" if s.kind == "joined" else "studio_card_clicked"
            profile = await self._apply(
                consumed, s.party_id, {"$inc": count_update(counted, at, self._tz)}
            )
            if profile is None or s.kind != "card_clicked":
                return
            for campaign, trigger in (await self.book.current()).campaigns_for(
                "studio_card_clicked"
            ):
                if card_click_fires(trigger, s.product_id):
                    await self.outreach.offer(
                        campaign, s.party_id, profile, cause="studio_card_clicked"
                    )

    async def _engagement(
        self, consumed: ConsumedEvent, event: engagement_pb2.EngagementEvent
    ) -> None:
        kind = event.WhichOneof("event")
        if kind == "engagement_score":
            e = event.engagement_score
            await self._apply(
                consumed,
                e.party_id,
                {
                    "$set": {
                        "engagement_milli": Int64(e.score_milli),
                        "engagement_at": e.as_of.ToDatetime(tzinfo=UTC),
                    }
                },
            )
        elif kind == "campaign_funnel":
            f = event.campaign_funnel
            await self.repo.set_live(
                f"funnel:{f.campaign_id}",
                {
                    "sent": f.sent,
                    "delivered": f.delivered,
                    "opened": f.opened,
                    "clicked": f.clicked,
                    "converted": f.converted,
                    "as_of": f.as_of.ToDatetime(tzinfo=UTC),
                },
            )
        elif kind == "studio_viewers":
            v = event.studio_viewers
            await self.repo.set_live(
                f"viewers:{v.session_id}",
                {
                    "studio_id": v.studio_id,
                    "concurrent": v.concurrent,
                    "as_of": v.as_of.ToDatetime(tzinfo=UTC),
                },
            )


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
            await projector.outreach.offer(
                campaign, reminder["party_id"], profile, cause="loan_not_accepted"
            )
            attempted += 1
    return attempted
