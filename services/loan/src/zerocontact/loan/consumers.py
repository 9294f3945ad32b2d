"""Loan's consumers: identity's events (the party view) and the risk signals (decisions)."""

from __future__ import annotations

import logging
from datetime import UTC
from typing import Any

from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.loan.domain.decisions import Assessment, RiskRule
from zerocontact.loan.events import BAND_FROM_PROTO
from zerocontact.loan.handlers import LoanDeps, decide_application
from zerocontact.platform.idempotency import apply_once
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.signals.v1 import risk_pb2

log = logging.getLogger(__name__)

KYC_LEVELS = {
    identity_pb2.KYC_LEVEL_NONE: "NONE",
    identity_pb2.KYC_LEVEL_BASIC: "BASIC",
    identity_pb2.KYC_LEVEL_VERIFIED: "VERIFIED",
    identity_pb2.KYC_LEVEL_ENHANCED: "ENHANCED",
}


class MismatchedEvent(ValueError):
    """The payload is not the event its ``ce_type`` header names, or breaks the contract."""


def _check_type(consumed: ConsumedEvent, message: Any) -> None:
    if consumed.event.type != message.DESCRIPTOR.full_name:
        raise MismatchedEvent(f"ce_type {consumed.event.type} does not match the payload")


async def apply_identity_event(consumed: ConsumedEvent, *, deps: LoanDeps) -> bool:
    """Keep the local view of parties and KYC levels; idempotent by ``ce_id``."""
    wrapper = identity_pb2.IdentityEvent.FromString(consumed.event.data)
    kind = wrapper.WhichOneof("event")
    parties = deps.repo.parties
    if kind == "customer_registered":
        e = wrapper.customer_registered
        _check_type(consumed, e)
        update: dict[str, Any] = {
            "$set": {"kind": "CUSTOMER", "birth_year": e.birth_year or None},
            "$setOnInsert": {"kyc_level": "NONE"},
        }
        party_id = e.customer_id
    elif kind == "enterprise_registered":
        e2 = wrapper.enterprise_registered
        _check_type(consumed, e2)
        update = {
            "$set": {"kind": "ENTERPRISE", "representative_id": e2.legal_representative_id},
            "$setOnInsert": {"kyc_level": "NONE"},
        }
        party_id = e2.enterprise_id
    elif kind == "kyc_level_changed":
        e3 = wrapper.kyc_level_changed
        _check_type(consumed, e3)
        level = KYC_LEVELS.get(e3.to_level)
        if level is None:
            raise MismatchedEvent("KycLevelChanged without a valid to_level")
        update = {
            "$set": {"kyc_level": level, "kyc_changed_at": e3.changed_at.ToDatetime(tzinfo=UTC)}
        }
        party_id = e3.party.party_id
    else:
        return False  # authentication events and newer kinds: not needed for lending
    if not party_id:
        raise MismatchedEvent(f"{kind} without a party id")
    applied = await apply_once(parties, doc_id=party_id, event_id=consumed.event.id, update=update)
    deps.party_waits.changed(party_id)  # requests waiting for this party re-read it now
    return applied


async def apply_risk_event(consumed: ConsumedEvent, *, deps: LoanDeps) -> bool:
    """Decide on an assessment; remember an alert against its party."""
    wrapper = risk_pb2.RiskEvent.FromString(consumed.event.data)
    kind = wrapper.WhichOneof("event")
    if kind == "risk_assessment":
        a = wrapper.risk_assessment
        _check_type(consumed, a)
        band = BAND_FROM_PROTO.get(a.band)
        if band is None or not a.application_id:
            raise MismatchedEvent("RiskAssessment without an application id or a valid band")
        assessment = Assessment(
            assessment_id=a.assessment_id,
            event_id=consumed.event.id,
            score=a.score,
            band=band,
            rules=tuple(RiskRule(r.name, r.triggered, r.description) for r in a.rules),
            scorecard_version=a.scorecard_version,
        )
        return await decide_application(
            application_id=a.application_id, party_id=a.party_id, assessment=assessment, deps=deps
        )
    if kind == "risk_alert":
        alert = wrapper.risk_alert
        _check_type(consumed, alert)
        if not alert.party_id or not alert.alert_id:
            raise MismatchedEvent("RiskAlert without a party or alert id")
        described = "; ".join(r.description for r in alert.reasons if r.description)
        kind_name = risk_pb2.RiskAlertKind.Name(alert.kind).removeprefix("RISK_ALERT_KIND_")
        update = {
            "$set": {
                f"alerts.{alert.alert_id}": {
                    "kind": kind_name,
                    "description": described or kind_name.lower().replace("_", " "),
                    "raised_at": alert.raised_at.ToDatetime(tzinfo=UTC),
                }
            }
        }
        return await apply_once(
            deps.repo.parties, doc_id=alert.party_id, event_id=consumed.event.id, update=update
        )
    return False


async def handle(consumed: ConsumedEvent, *, deps: LoanDeps, identity_topic: str) -> None:
    """The consumer runner's handler: dispatch by topic."""
    if consumed.topic == identity_topic:
        await apply_identity_event(consumed, deps=deps)
    else:
        await apply_risk_event(consumed, deps=deps)
