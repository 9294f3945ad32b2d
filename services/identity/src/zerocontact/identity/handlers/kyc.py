"""KYC/KYB transitions: by the customer's own strong authentication, by a reviewer, and the
enterprise following its legal representative."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from zerocontact.identity.domain import events as ev
from zerocontact.identity.domain import kyc, parties
from zerocontact.identity.domain.errors import Forbidden, KycTransitionRefused
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.handlers.events import to_cloud_event
from zerocontact.identity.repository import CUSTOMERS, ENTERPRISES, ConcurrentUpdate
from zerocontact.platform.auth import Principal, check_step_up
from zerocontact.platform.errors import DomainError, NotFound
from zerocontact.platform.outbox import OutboxEvent

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 5


class Busy(DomainError):
    """Too many concurrent writers on one party; the client may retry."""

    code = "concurrent_update"


async def verify_customer(
    customer_id: str, *, principal: Principal, ctx: IdentityContext
) -> parties.Customer:
    """BASIC -> VERIFIED on the customer's own recent two-factor authentication."""
    if principal.subject != customer_id:
        raise Forbidden("a customer can only verify themselves")
    check_step_up(principal, ctx.settings.step_up_max_age_s)
    evidence = (
        f"aal={principal.aal} amr={','.join(principal.methods)} session={principal.session_id}"
    )
    return await change_customer_level(
        customer_id,
        kyc.KycLevel.VERIFIED,
        actor=f"party:{customer_id}",
        reason="verified by a strong factor (two-factor authentication)",
        evidence=evidence,
        ctx=ctx,
    )


async def change_customer_level(
    customer_id: str,
    target: kyc.KycLevel,
    *,
    actor: str,
    reason: str,
    evidence: str,
    ctx: IdentityContext,
) -> parties.Customer:
    """Apply one recorded KYC transition with its KycLevelChanged event (version-guarded)."""
    for _ in range(MAX_ATTEMPTS):
        doc = await ctx.parties.get_customer_doc(customer_id)
        if doc is None:
            raise NotFound(f"customer {customer_id} does not exist")
        record = ctx.parties.customer_record(
            doc, ctx.decrypt_birth_date(doc["birth_date_encrypted"])
        )
        customer = record.customer
        step = kyc.transition(
            customer.kyc_level, target, actor=actor, reason=reason, evidence=evidence,
            now=datetime.now(UTC),
        )  # fmt: skip
        event = _record_step(customer, step, enterprise=False, ctx=ctx)
        try:
            await ctx.parties.save_customer(record, [event])
        except ConcurrentUpdate:
            continue
        ctx.relay.nudge(CUSTOMERS, customer.id)
        log.info("kyc level changed", extra={"party_id": customer.id, "to": str(target)})
        return customer
    raise Busy(f"customer {customer_id} is being changed concurrently, retry", retry=True)


def _record_step(
    party: parties.Customer | parties.Enterprise,
    step: kyc.KycTransition,
    *,
    enterprise: bool,
    ctx: IdentityContext,
) -> OutboxEvent:
    """Apply ``step`` to the party (level, audit history, version) and make its event."""
    party.kyc_level = step.to_level
    party.kyc_history.append(step)
    party.version += 1
    return to_cloud_event(
        ev.KycLevelChanged(party.id, enterprise, step),
        topic=ctx.settings.events_topic,
    )


async def change_enterprise_level(
    enterprise_id: str,
    target: kyc.KycLevel,
    *,
    actor: str,
    reason: str,
    evidence: str,
    ctx: IdentityContext,
) -> parties.Enterprise:
    """Apply one recorded KYB transition; VERIFIED and above need a VERIFIED representative."""
    for _ in range(MAX_ATTEMPTS):
        enterprise = await ctx.parties.get_enterprise(enterprise_id)
        if enterprise is None:
            raise NotFound(f"enterprise {enterprise_id} does not exist")
        rep = await ctx.parties.get_customer_doc(enterprise.representative_id)
        rep_level = kyc.KycLevel(rep["kyc_level"]) if rep else kyc.KycLevel.NONE
        step = kyc.enterprise_transition(
            enterprise.kyc_level, target, representative_level=rep_level, actor=actor,
            reason=reason, evidence=evidence, now=datetime.now(UTC),
        )  # fmt: skip
        event = _record_step(enterprise, step, enterprise=True, ctx=ctx)
        try:
            await ctx.parties.save_enterprise(enterprise, [event])
        except ConcurrentUpdate:
            continue
        ctx.relay.nudge(ENTERPRISES, enterprise.id)
        log.info("kyb level changed", extra={"party_id": enterprise.id, "to": str(target)})
        return enterprise
    raise Busy(f"enterprise {enterprise_id} is being changed concurrently, retry", retry=True)


async def follow_representative(customer_id: str, *, ctx: IdentityContext) -> list[str]:
    """The representative reached VERIFIED: promote their BASIC enterprises. Idempotent:
    an enterprise already VERIFIED is left alone, so a redelivered event changes nothing."""
    promoted = []
    for enterprise in await ctx.parties.enterprises_represented_by(customer_id):
        if enterprise.kyc_level != kyc.KycLevel.BASIC:
            continue
        try:
            await change_enterprise_level(
                enterprise.id,
                kyc.KycLevel.VERIFIED,
                actor=kyc.SYSTEM,
                reason="legal representative is VERIFIED",
                evidence=f"representative={customer_id}",
                ctx=ctx,
            )
        except KycTransitionRefused:
            continue  # moved meanwhile (e.g. a reviewer promoted it): nothing left to do
        promoted.append(enterprise.id)
    return promoted
