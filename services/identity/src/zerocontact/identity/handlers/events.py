"""Domain events to protobuf CloudEvents on ``identity.events.v1``, keyed by party id."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.common.v1 import party_pb2
from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain.authentication import Aal, Factor
from zerocontact.identity.domain.kyc import KycLevel
from zerocontact.identity.v1 import events_pb2, notifications_pb2
from zerocontact.platform.ids import new_id
from zerocontact.platform.kafka.cloudevents import CloudEvent, dataschema_for
from zerocontact.platform.outbox import OutboxEvent, protobuf_event
from zerocontact.platform.telemetry import current_traceparent

SOURCE = "/zerocontact/identity"

_LEVELS = {
    KycLevel.NONE: events_pb2.KYC_LEVEL_NONE,
    KycLevel.BASIC: events_pb2.KYC_LEVEL_BASIC,
    KycLevel.VERIFIED: events_pb2.KYC_LEVEL_VERIFIED,
    KycLevel.ENHANCED: events_pb2.KYC_LEVEL_ENHANCED,
}
_AAL = {Aal.AAL1: events_pb2.ASSURANCE_LEVEL_AAL1, Aal.AAL2: events_pb2.ASSURANCE_LEVEL_AAL2}
_FACTORS = {
    Factor.PASSWORD: events_pb2.FACTOR_KIND_PASSWORD,
    Factor.TOTP: events_pb2.FACTOR_KIND_TOTP,
    Factor.SMS: events_pb2.FACTOR_KIND_SMS,
    Factor.RECOVERY_CODE: events_pb2.FACTOR_KIND_RECOVERY_CODE,
}
KYC_LEVEL_OF_PROTO = {v: k for k, v in _LEVELS.items()}


def _ts(moment: datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _fill(wrapper: events_pb2.IdentityEvent, event: ev.IdentityDomainEvent) -> tuple[str, datetime]:
    """Set the oneof from ``event``; return the party key and the event time."""
    if isinstance(event, ev.CustomerRegistered):
        c = event.customer
        m = wrapper.customer_registered
        m.customer_id, m.id_number_masked, m.phone_masked = c.id, c.id_number_masked, c.phone_masked
        m.birth_year = c.birth_date.year
        m.registered_at.CopyFrom(_ts(c.registered_at))
        return c.id, c.registered_at
    if isinstance(event, ev.EnterpriseRegistered):
        e = event.enterprise
        n = wrapper.enterprise_registered
        n.enterprise_id, n.credit_code, n.name = e.id, e.credit_code, e.name
        n.legal_representative_id, n.business_category = e.representative_id, e.business_category
        n.registered_capital.CopyFrom(e.registered_capital.to_proto())
        n.registered_at.CopyFrom(_ts(e.registered_at))
        return e.id, e.registered_at
    if isinstance(event, ev.KycLevelChanged):
        t = event.transition
        k = wrapper.kyc_level_changed
        k.party.party_id = event.party_id
        k.party.kind = (
            party_pb2.PartyRef.PARTY_KIND_ENTERPRISE
            if event.is_enterprise
            else party_pb2.PartyRef.PARTY_KIND_CUSTOMER
        )
        k.from_level, k.to_level = _LEVELS[t.from_level], _LEVELS[t.to_level]
        k.actor, k.reason, k.evidence = t.actor, t.reason, t.evidence
        k.changed_at.CopyFrom(_ts(t.at))
        return event.party_id, t.at
    if isinstance(event, ev.FactorEnrolled):
        f = wrapper.factor_enrolled
        f.customer_id, f.factor = event.customer_id, _FACTORS[event.factor]
        f.enrolled_at.CopyFrom(_ts(event.at))
        return event.customer_id, event.at
    if isinstance(event, ev.AuthenticationSucceeded):
        s = wrapper.authentication_succeeded
        s.customer_id, s.assurance_level = event.customer_id, _AAL[event.aal]
        s.methods.extend(str(m) for m in event.methods)
        s.session_id, s.device_id, s.source_address = (
            event.session_id,
            event.device_id,
            event.source_address,
        )
        s.authenticated_at.CopyFrom(_ts(event.at))
        return event.customer_id, event.at
    if isinstance(event, ev.AuthenticationFailed):
        f2 = wrapper.authentication_failed
        f2.customer_id, f2.factor = event.customer_id, _FACTORS[event.factor]
        f2.consecutive_failures = event.consecutive_failures
        f2.device_id, f2.source_address = event.device_id, event.source_address
        f2.failed_at.CopyFrom(_ts(event.at))
        return event.customer_id, event.at
    lock = wrapper.account_locked
    lock.customer_id, lock.consecutive_failures = event.customer_id, event.consecutive_failures
    lock.locked_until.CopyFrom(_ts(event.locked_until))
    lock.source_address = event.source_address
    lock.locked_at.CopyFrom(_ts(event.at))
    return event.customer_id, event.at


def to_cloud_event(event: ev.IdentityDomainEvent, *, topic: str) -> OutboxEvent:
    """The CloudEvent for a domain event; ``ce_type`` is the inner message's full name."""
    wrapper = events_pb2.IdentityEvent()
    key, moment = _fill(wrapper, event)
    return protobuf_event(wrapper, topic=topic, key=key, source=SOURCE, time=moment)


def sms_code_requested(
    *,
    delivery_id: str,
    customer_id: str,
    phone_masked: str,
    template: str,
    expires_at: datetime,
    requested_at: datetime,
    topic: str,
) -> OutboxEvent:
    """The reference-only notification for the SMS team (never the code)."""
    wrapper = notifications_pb2.IdentityNotification()
    m = wrapper.sms_code_requested
    m.delivery_id, m.customer_id, m.phone_masked, m.template = (
        delivery_id,
        customer_id,
        phone_masked,
        template,
    )
    m.expires_at.CopyFrom(_ts(expires_at))
    m.requested_at.CopyFrom(_ts(requested_at))
    cloud = CloudEvent(
        id=new_id(),
        source=f"{SOURCE}/notifications",
        type=m.DESCRIPTOR.full_name,
        subject=customer_id,
        data=wrapper.SerializeToString(),
        time=requested_at,
        traceparent=current_traceparent(),  # built here, not by protobuf_event: capture it
        dataschema=dataschema_for(wrapper.DESCRIPTOR.full_name),
    )
    return OutboxEvent(topic=topic, key=customer_id, event=cloud)
