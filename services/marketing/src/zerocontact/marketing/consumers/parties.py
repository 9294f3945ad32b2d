"""Identity's, marketing's own, the engagement signals' and the assistant's events on profiles;
studio card clicks fire their triggers; live funnels and viewer counts kept as live signals;
a complaint raised with the assistant pauses outreach until it is resolved."""

from __future__ import annotations

import re
from datetime import UTC, timedelta
from typing import TYPE_CHECKING

from bson import Int64

from zerocontact.assistant.v1 import events_pb2 as assistant_pb
from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.marketing.domain.triggers import card_click_fires
from zerocontact.marketing.events import CHANNEL_NAMES
from zerocontact.marketing.profiles import count_update
from zerocontact.marketing.v1 import events_pb2 as marketing_pb
from zerocontact.platform.kafka.cloudevents import MalformedEvent
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.signals.v1 import engagement_pb2

if TYPE_CHECKING:
    from zerocontact.marketing.consumers.projector import Projector

# A complaint id becomes a field name of the profile's ``complaints``: a UUID, nothing else.
_COMPLAINT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


_KYC_LEVELS = frozenset(identity_pb.KycLevel.values())


async def on_identity(
    p: Projector, consumed: ConsumedEvent, event: identity_pb.IdentityEvent
) -> None:
    """Registrations and KYC levels on the party's profile."""
    kind = event.WhichOneof("event")
    if kind == "customer_registered":
        c = event.customer_registered
        await p.apply(
            consumed,
            c.customer_id,
            {"$set": {"party_kind": "customer", "birth_year": c.birth_year}},
        )
    elif kind == "enterprise_registered":
        e = event.enterprise_registered
        await p.apply(consumed, e.enterprise_id, {"$set": {"party_kind": "enterprise"}})
    elif kind == "kyc_level_changed":
        k = event.kyc_level_changed
        # A level this build does not know (a newer identity, or a bad producer) would land in
        # the profile as a bare number that no segment rule means: dead-letter it instead.
        if k.to_level == identity_pb.KYC_LEVEL_UNSPECIFIED or k.to_level not in _KYC_LEVELS:
            raise MalformedEvent(f"KycLevelChanged with an unknown to_level {k.to_level}")
        await p.apply(consumed, k.party.party_id, {"$set": {"kyc_level": int(k.to_level)}})


async def on_marketing(
    p: Projector, consumed: ConsumedEvent, event: marketing_pb.MarketingEvent
) -> None:
    """Marketing's own events on the profile; studio card clicks fire their triggers."""
    kind = event.WhichOneof("event")
    at = consumed.event.time
    if kind == "risk_tolerance_assessed":
        r = event.risk_tolerance_assessed
        await p.apply(consumed, r.party_id, {"$set": {"risk_grade": r.grade}})
    elif kind == "contact_preferences_changed":
        prefs = event.contact_preferences_changed
        await p.apply(
            consumed,
            prefs.party_id,
            {
                "$set": {
                    "preferences": {
                        "consented": [CHANNEL_NAMES[c] for c in prefs.consented_channels],
                        "do_not_contact": prefs.do_not_contact,
                    }
                }
            },
        )
    elif kind == "offer_sent":
        o = event.offer_sent
        await p.apply(consumed, o.party_id, {"$inc": {f"interactions.{o.campaign_id}.sent": 1}})
    elif kind == "offer_interaction":
        i = event.offer_interaction
        await p.apply(
            consumed,
            i.party_id,
            {
                "$inc": {
                    f"interactions.{i.campaign_id}.{i.stage}": 1,
                    **count_update(f"offer_{i.stage}", at, p.tz),
                }
            },
        )
    elif kind == "offer_converted":
        c = event.offer_converted
        await p.apply(
            consumed,
            c.party_id,
            {
                "$inc": {
                    f"interactions.{c.campaign_id}.converted": 1,
                    **count_update("offer_converted", at, p.tz),
                }
            },
        )
    elif kind == "studio_activity":
        s = event.studio_activity
        if s.kind not in ("joined", "card_clicked"):
            return
        counted = "studio_joined" if s.kind == "joined" else "studio_card_clicked"
        profile = await p.apply(consumed, s.party_id, {"$inc": count_update(counted, at, p.tz)})
        if profile is None or s.kind != "card_clicked":
            return
        for campaign, trigger in (await p.book.current()).campaigns_for("studio_card_clicked"):
            if card_click_fires(trigger, s.product_id):
                await p.outreach.offer(
                    campaign, s.party_id, profile, cause="studio_card_clicked",
                    triggered_at=consumed.event.time,
                )  # fmt: skip


async def on_engagement(
    p: Projector, consumed: ConsumedEvent, event: engagement_pb2.EngagementEvent
) -> None:
    """Engagement scores on the profile; live funnels and viewer counts as live signals."""
    kind = event.WhichOneof("event")
    if kind == "engagement_score":
        e = event.engagement_score
        await p.apply(
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
        await p.repo.set_live(
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
        await p.repo.set_live(
            f"viewers:{v.session_id}",
            {
                "studio_id": v.studio_id,
                "concurrent": v.concurrent,
                "as_of": v.as_of.ToDatetime(tzinfo=UTC),
            },
        )


async def on_assistant(
    p: Projector, consumed: ConsumedEvent, event: assistant_pb.AssistantEvent
) -> None:
    """Open complaints on the profile (``complaints``: id → until when outreach is paused):
    raised adds one for ``complaint_pause_s``, resolved removes it. Other assistant events are
    the engagement signals' business."""
    kind = event.WhichOneof("event")
    if kind == "complaint_raised":
        c = event.complaint_raised
        _complaint_id(c.complaint_id)
        until = c.raised_at.ToDatetime(tzinfo=UTC) + timedelta(seconds=p.settings.complaint_pause_s)
        await p.apply(consumed, c.party_id, {"$set": {f"complaints.{c.complaint_id}": until}})
    elif kind == "complaint_resolved":
        r = event.complaint_resolved
        _complaint_id(r.complaint_id)
        await p.apply(consumed, r.party_id, {"$unset": {f"complaints.{r.complaint_id}": ""}})


def _complaint_id(value: str) -> None:
    if not _COMPLAINT_ID.match(value):
        raise MalformedEvent("complaint_id is not a UUID")
