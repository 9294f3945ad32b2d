"""Builders of the protobuf CloudEvents marketing emits (``marketing.events.v1`` and
``marketing.notifications.v1``)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.marketing.v1 import events_pb2, notifications_pb2
from zerocontact.platform.compliance import Finding
from zerocontact.platform.outbox import OutboxEvent, protobuf_event

SOURCE = "/zerocontact/marketing"
CHANNELS = {
    "app_push": events_pb2.CHANNEL_APP_PUSH,
    "sms": events_pb2.CHANNEL_SMS,
    "in_app": events_pb2.CHANNEL_IN_APP,
    "live_studio": events_pb2.CHANNEL_LIVE_STUDIO,
}
CHANNEL_NAMES = {v: k for k, v in CHANNELS.items()}


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _wrap(wrapper: events_pb2.MarketingEvent, *, topic: str, key: str, at: datetime) -> OutboxEvent:
    return protobuf_event(wrapper, topic=topic, key=key, source=SOURCE, time=at)


def preferences_changed(
    topic: str,
    party_id: str,
    *,
    consented: list[str],
    do_not_contact: bool,
    quiet_start: str,
    quiet_end: str,
    time_zone: str,
    at: datetime,
) -> OutboxEvent:
    """ContactPreferencesChanged keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.contact_preferences_changed
    e.party_id = party_id
    e.consented_channels.extend(CHANNELS[c] for c in consented)
    e.do_not_contact = do_not_contact
    e.quiet_start, e.quiet_end, e.time_zone = quiet_start, quiet_end, time_zone
    e.changed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def risk_tolerance_assessed(topic: str, party_id: str, grade: int, at: datetime) -> OutboxEvent:
    """RiskToleranceAssessed keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.risk_tolerance_assessed
    e.party_id, e.grade = party_id, grade
    e.assessed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def segment_membership_changed(
    topic: str, party_id: str, segment_id: str, member: bool, at: datetime
) -> OutboxEvent:
    """SegmentMembershipChanged keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.segment_membership_changed
    e.party_id, e.segment_id, e.member = party_id, segment_id, member
    e.changed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def campaign_reviewed(
    topic: str,
    campaign_id: str,
    status: str,
    findings: list[Finding],
    approver: str,
    at: datetime,
) -> OutboxEvent:
    """CampaignReviewed keyed by campaign."""
    w = events_pb2.MarketingEvent()
    e = w.campaign_reviewed
    e.campaign_id, e.status, e.approver = campaign_id, status, approver
    for f in findings:
        e.findings.add(
            rule=f.rule,
            variant_id=f.variant_id,
            text=f.text,
            start=f.start,
            end=f.end,
            message=f.message,
        )
    e.reviewed_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=campaign_id, at=at)


def offer_sent(
    topic: str,
    *,
    delivery_id: str,
    party_id: str,
    campaign_id: str,
    variant_id: str,
    product_id: str,
    channel: str,
    cause: str,
    at: datetime,
) -> OutboxEvent:
    """OfferSent keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.offer_sent
    e.delivery_id, e.party_id, e.campaign_id = delivery_id, party_id, campaign_id
    e.variant_id, e.product_id, e.channel, e.cause = (
        variant_id,
        product_id,
        CHANNELS[channel],
        cause,
    )
    e.sent_at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def offer_interaction(
    topic: str,
    *,
    delivery_id: str,
    party_id: str,
    campaign_id: str,
    channel: str,
    stage: str,
    at: datetime,
) -> OutboxEvent:
    """OfferInteraction (delivered/failed/opened/clicked) keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.offer_interaction
    e.delivery_id, e.party_id, e.campaign_id = delivery_id, party_id, campaign_id
    e.channel, e.stage = CHANNELS[channel], stage
    e.at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def contact_suppressed(
    topic: str,
    *,
    party_id: str,
    campaign_id: str,
    channel: str,
    reason: str,
    cause: str,
    at: datetime,
) -> OutboxEvent:
    """ContactSuppressed keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.contact_suppressed
    e.party_id, e.campaign_id, e.channel = party_id, campaign_id, CHANNELS[channel]
    e.reason, e.cause = reason, cause
    e.at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def offer_converted(
    topic: str, *, party_id: str, campaign_id: str, product_id: str, holdout: bool, at: datetime
) -> OutboxEvent:
    """OfferConverted keyed by party."""
    w = events_pb2.MarketingEvent()
    e = w.offer_converted
    e.party_id, e.campaign_id, e.product_id, e.holdout = party_id, campaign_id, product_id, holdout
    e.at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def studio_activity(
    topic: str,
    *,
    studio_id: str,
    session_id: str,
    party_id: str,
    kind: str,
    product_id: str,
    at: datetime,
) -> OutboxEvent:
    """StudioActivity keyed by party (the engagement signals count it per party)."""
    w = events_pb2.MarketingEvent()
    e = w.studio_activity
    e.studio_id, e.session_id, e.party_id = studio_id, session_id, party_id
    e.kind, e.product_id = kind, product_id
    e.at.CopyFrom(_ts(at))
    return _wrap(w, topic=topic, key=party_id, at=at)


def sms_requested(
    topic: str, *, delivery_id: str, party_id: str, campaign_id: str, text: str, at: datetime
) -> OutboxEvent:
    """MarketingSmsRequested keyed by party (no phone number: the gateway resolves it)."""
    w = notifications_pb2.MarketingNotification()
    e = w.marketing_sms_requested
    e.delivery_id, e.party_id, e.campaign_id, e.text = delivery_id, party_id, campaign_id, text
    e.requested_at.CopyFrom(_ts(at))
    return protobuf_event(w, topic=topic, key=party_id, source=SOURCE, time=at)
