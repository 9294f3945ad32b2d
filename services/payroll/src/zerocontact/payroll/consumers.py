"""The party directory: enterprises and their KYB level, projected from ``identity.events.v1``.

Payroll learns about enterprises only from identity's events (never from its database). The
repository applies the projection idempotently by ``ce_id`` (``apply_once``), so redeliveries
change nothing.
"""

from __future__ import annotations

import logging

from zerocontact.common.v1 import party_pb2
from zerocontact.identity.v1 import events_pb2 as identity_pb2
from zerocontact.payroll.repository import PayrollRepository
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.projection import ProjectionWaits

log = logging.getLogger(__name__)


class UnknownEventType(ValueError):
    """The payload is not the event its ``ce_type`` header names (poison)."""


async def apply_identity_event(
    consumed: ConsumedEvent, *, repo: PayrollRepository, waits: ProjectionWaits | None = None
) -> bool:
    """Apply one identity event to the directory; False when skipped or applied before.
    ``waits``: requests waiting for the party are woken once it is applied."""
    applied, party_id = await _apply(consumed, repo)
    if waits is not None and party_id:
        waits.changed(party_id)
    return applied


async def _apply(consumed: ConsumedEvent, repo: PayrollRepository) -> tuple[bool, str]:
    wrapper = identity_pb2.IdentityEvent.FromString(consumed.event.data)
    kind = wrapper.WhichOneof("event")
    if kind == "enterprise_registered":
        registered = wrapper.enterprise_registered
        _check_type(consumed, registered.DESCRIPTOR.full_name)
        applied = await repo.record_enterprise(
            registered.enterprise_id,
            event_id=consumed.event.id,
            name=registered.name,
            credit_code=registered.credit_code,
            legal_representative_id=registered.legal_representative_id,
            registered_at=registered.registered_at.ToDatetime(),
        )
        return applied, registered.enterprise_id
    if kind == "kyc_level_changed":
        changed = wrapper.kyc_level_changed
        _check_type(consumed, changed.DESCRIPTOR.full_name)
        if changed.party.kind != party_pb2.PartyRef.PARTY_KIND_ENTERPRISE:
            return False, ""  # customers' levels do not concern payroll
        applied = await repo.record_kyc_level(
            changed.party.party_id,
            event_id=consumed.event.id,
            level=identity_pb2.KycLevel.Name(changed.to_level),
            changed_at=changed.changed_at.ToDatetime(),
            actor=changed.actor,
        )
        return applied, changed.party.party_id
    # events payroll does not need (customers, authentication) or does not know yet
    return False, ""


def _check_type(consumed: ConsumedEvent, expected: str) -> None:
    if consumed.event.type != expected:
        raise UnknownEventType(f"ce_type {consumed.event.type} does not match the payload")
