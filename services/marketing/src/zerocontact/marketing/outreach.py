"""Making (or suppressing) one offer to one party: suitability, holdout, consent,
do-not-contact, quiet hours, frequency caps, then the channel and its receipt.

Every refusal is recorded (``suppressions`` with a ``ContactSuppressed`` event); every send is
a ``deliveries`` document with ``OfferSent`` (and, for SMS, the ``MarketingSmsRequested``
notification), then ``OfferInteraction`` with the channel's receipt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, time

from prometheus_client import Counter, Histogram

from zerocontact.marketing import events, metrics, profiles
from zerocontact.marketing.channels import Channel, OutgoingMessage
from zerocontact.marketing.domain import contact
from zerocontact.marketing.domain.campaigns import Campaign
from zerocontact.marketing.domain.catalog import Product, suitable
from zerocontact.marketing.domain.evaluation import in_holdout
from zerocontact.marketing.repository import (
    DELIVERIES,
    MEMBERS,
    SUPPRESSIONS,
    Repository,
    product_of,
)
from zerocontact.marketing.settings import MarketingSettings
from zerocontact.platform.compliance import Variant
from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay

log = logging.getLogger(__name__)

OUTCOMES = Counter("zc_marketing_offers_total", "Offers attempted", ["cause", "outcome"])
SEND_SECONDS = Histogram(
    "zc_marketing_offer_seconds", "From the start of an offer to the channel's receipt"
)

Clock = Callable[[], datetime]

# The suppression reason once a campaign's spending (sends x cost per contact) reaches its
# budget: every send reserves its cost first, so the spending never passes the budget.
BUDGET_EXHAUSTED = "budget_exhausted"


def preferences_of(doc: Document | None, default_time_zone: str) -> contact.Preferences:
    """A preferences document as :class:`contact.Preferences` (none: no consent at all)."""
    if doc is None:
        return contact.Preferences(time_zone=default_time_zone)
    return contact.Preferences(
        consented=frozenset(doc.get("consented", [])),
        do_not_contact=bool(doc.get("do_not_contact", False)),
        quiet_start=time.fromisoformat(doc.get("quiet_start") or "21:00"),
        quiet_end=time.fromisoformat(doc.get("quiet_end") or "08:00"),
        time_zone=doc.get("time_zone") or default_time_zone,
    )


@dataclass
class Outreach:
    """Offers on behalf of campaigns; ``clock`` is injectable so tests need no sleeping."""

    repo: Repository
    relay: OutboxRelay
    channel: Channel
    settings: MarketingSettings
    clock: Clock
    caps: contact.Caps

    async def offer(
        self,
        campaign: Campaign,
        party_id: str,
        profile: Document | None,
        *,
        cause: str,
        triggered_at: datetime | None = None,
    ) -> str:
        """Offer ``campaign``'s product to ``party_id``; the outcome (``delivered``,
        ``failed``, ``holdout`` or the suppression reason). ``triggered_at``: when the
        triggering event happened (a trigger's offer; None for a scheduled send)."""
        started = self.clock()
        outcome = await self._offer(
            campaign, party_id, profile, cause=cause, now=started, triggered_at=triggered_at
        )
        OUTCOMES.labels(cause, outcome).inc()
        return outcome

    async def _offer(
        self,
        campaign: Campaign,
        party_id: str,
        profile: Document | None,
        *,
        cause: str,
        now: datetime,
        triggered_at: datetime | None = None,
    ) -> str:
        cid = campaign.id
        product = campaign.product
        variants = campaign.variants
        first_channel = variants[0].channel
        grade = (profile or {}).get("risk_grade")
        if not suitable(product, grade):
            return await self._suppress(cid, party_id, first_channel, "unsuitable", cause, now)
        if in_holdout(cid, party_id, campaign.holdout_percent):
            await self._member(cid, party_id, "holdout", now)
            return "holdout"
        prefs = preferences_of(
            await self.repo.preferences_of(party_id), self.settings.default_time_zone
        )
        if profile is None:
            profile = await self.repo.profile(party_id)
        prefs = replace(prefs, paused_until=profiles.paused_until(profile))
        cost = campaign.cost_per_contact_minor
        reserved = False
        for _ in range(5):  # compare-and-set on the contact log; retried on a race
            log_doc = await self.repo.contact_log_of(party_id)
            sent: dict[str, dict[str, int]] = (log_doc or {}).get("sent") or {}
            chosen: Variant | None = None
            first_reason: contact.Suppression | None = None
            for variant in variants:
                reason = contact.decide(
                    prefs,
                    variant.channel,
                    sent_by_day={d: int(n) for d, n in sent.get(variant.channel, {}).items()},
                    caps=self.caps,
                    now=now,
                )
                if reason is None:
                    chosen = variant
                    break
                first_reason = first_reason or reason
            if chosen is None:
                assert first_reason is not None
                if reserved:
                    await self.repo.release_budget(cid, cost)
                return await self._suppress(
                    cid, party_id, first_channel, first_reason.value, cause, now
                )
            # The budget is reserved only for a contact that is allowed, and before the cap
            # slot is taken: a refused reservation must not use up the party's cap.
            if not reserved:
                budget = campaign.budget_minor or 0
                if not await self.repo.reserve_budget(cid, cost, budget):
                    return await self._suppress(
                        cid, party_id, first_channel, BUDGET_EXHAUSTED, cause, now
                    )
                reserved = True
            day = contact.local_day(now, prefs.time_zone)
            if await self.repo.claim_contact(party_id, chosen.channel, day, expected=log_doc):
                break
        else:
            if reserved:
                await self.repo.release_budget(cid, cost)
            return await self._suppress(cid, party_id, first_channel, "frequency_cap", cause, now)
        return await self._deliver(campaign, chosen, party_id, product, cause, now, triggered_at)

    async def _deliver(
        self,
        campaign: Campaign,
        variant: Variant,
        party_id: str,
        product: Product,
        cause: str,
        now: datetime,
        triggered_at: datetime | None = None,
    ) -> str:
        cid = campaign.id
        channel = variant.channel
        delivery_id = new_id()
        topic = self.settings.topic
        sent_events = [
            events.offer_sent(
                topic,
                delivery_id=delivery_id,
                party_id=party_id,
                campaign_id=cid,
                variant_id=variant.id,
                product_id=product.id,
                channel=channel,
                cause=cause,
                at=now,
            )
        ]
        if channel == "sms":
            sent_events.append(
                events.sms_requested(
                    self.settings.notifications_topic,
                    delivery_id=delivery_id,
                    party_id=party_id,
                    campaign_id=cid,
                    text=f"{variant.title} {variant.body}",
                    at=now,
                )
            )
        # One write after the receipt: the delivery with OfferSent (+ the SMS request) and
        # the receipt's OfferInteraction. The cap was claimed before the send, so a crash
        # between send and write can lose the record of a send, never exceed a cap.
        receipt = await self.channel.send(
            OutgoingMessage(delivery_id, party_id, cid, channel, variant.title, variant.body)
        )
        stage = "delivered" if receipt.delivered else "failed"
        sent_events.append(
            events.offer_interaction(
                self.settings.topic,
                delivery_id=delivery_id,
                party_id=party_id,
                campaign_id=cid,
                channel=channel,
                stage=stage,
                at=receipt.at,
            )
        )
        await self.repo.insert_delivery(
            {
                "_id": delivery_id,
                "party_id": party_id,
                "campaign_id": cid,
                "variant_id": variant.id,
                "product_id": product.id,
                "channel": channel,
                "cause": cause,
                "stage": stage,
                "sent_at": now,
                f"{stage}_at": receipt.at,
                "error": receipt.error,
            },
            sent_events,
        )
        self.relay.nudge(DELIVERIES, delivery_id)
        await self._member(cid, party_id, "treatment", now, delivery_id=delivery_id, stage=stage)
        SEND_SECONDS.observe((receipt.at - now).total_seconds())
        if triggered_at is not None and receipt.delivered:
            metrics.trigger_delivered(triggered_at, receipt.at)
        return stage

    async def _member(
        self,
        campaign_id: str,
        party_id: str,
        arm: str,
        now: datetime,
        *,
        delivery_id: str | None = None,
        stage: str | None = None,
    ) -> None:
        """Record the party in the campaign's treatment or holdout (first assignment wins)."""
        sent: Document | None = None
        if stage is not None:
            sent = {"stages.sent": now, f"stages.{stage}": now, "last_delivery_id": delivery_id}
        await self.repo.assign_member(campaign_id, party_id, arm=arm, now=now, sent=sent)

    async def _suppress(
        self, campaign_id: str, party_id: str, channel: str, reason: str, cause: str, now: datetime
    ) -> str:
        sid = new_id()
        await self.repo.insert_suppression(
            {
                "_id": sid,
                "party_id": party_id,
                "campaign_id": campaign_id,
                "channel": channel,
                "reason": reason,
                "cause": cause,
                "at": now,
            },
            [
                events.contact_suppressed(
                    self.settings.topic,
                    party_id=party_id,
                    campaign_id=campaign_id,
                    channel=channel,
                    reason=reason,
                    cause=cause,
                    at=now,
                )
            ],
        )
        self.relay.nudge(SUPPRESSIONS, sid)
        return reason


__all__ = ["BUDGET_EXHAUSTED", "MEMBERS", "Outreach", "preferences_of", "product_of"]
