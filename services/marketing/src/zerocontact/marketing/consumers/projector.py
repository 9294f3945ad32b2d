"""The profile projection: routes each consumed event by its topic and applies it to the
party's profile once (idempotent by ``ce_id``), with segment membership brought up to date.

Triggers run only when the event was applied for the first time, so a redelivered
SalaryPaid makes no second offer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from zerocontact.assistant.v1 import events_pb2 as assistant_pb
from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.marketing.book import Book
from zerocontact.marketing.consumers.loans import on_loan
from zerocontact.marketing.consumers.parties import (
    on_assistant,
    on_engagement,
    on_identity,
    on_marketing,
)
from zerocontact.marketing.consumers.payroll import on_payroll
from zerocontact.marketing.outreach import Clock, Outreach
from zerocontact.marketing.repository import Repository
from zerocontact.marketing.segmenting import refresh_membership
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.payroll.v1 import events_pb2 as payroll_pb
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay
from zerocontact.signals.v1 import engagement_pb2


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
            await on_payroll(self, consumed, payroll_pb.PayrollEvent.FromString(data))
        elif topic == s.loan_topic:
            await on_loan(self, consumed, loan_pb.LoanEvent.FromString(data))
        elif topic == s.identity_topic:
            await on_identity(self, consumed, identity_pb.IdentityEvent.FromString(data))
        elif topic == s.topic:
            await on_marketing(self, consumed, marketing_pb.MarketingEvent.FromString(data))
        elif topic == s.engagement_topic:
            await on_engagement(self, consumed, engagement_pb2.EngagementEvent.FromString(data))
        elif topic == s.assistant_topic:
            await on_assistant(self, consumed, assistant_pb.AssistantEvent.FromString(data))

    @property
    def tz(self) -> str:
        """The time zone of local days and months when a party has chosen none."""
        return self.settings.default_time_zone

    async def apply(
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
                time_zone=self.tz,
                topic=self.settings.topic,
            )
            segments = dict(profile.get("segments") or {})
            segments.update({s: True for s in joined})
            for s in left:
                segments.pop(s, None)
            profile["segments"] = segments
        return profile
