"""identity's own consumer of ``identity.events.v1``: an enterprise's KYB follows its legal
representative. Event-driven so that a crash after the representative's write still
promotes the enterprise (at-least-once delivery; the promotion is idempotent by state)."""

from __future__ import annotations

from zerocontact.common.v1 import party_pb2
from zerocontact.identity.handlers import kyc
from zerocontact.identity.handlers.context import IdentityContext
from zerocontact.identity.v1 import events_pb2
from zerocontact.platform.kafka.consumer import ConsumedEvent


class UnknownEventType(ValueError):
    """The record's type does not match its payload (poison: goes to the DLQ)."""


async def apply_identity_event(consumed: ConsumedEvent, *, ctx: IdentityContext) -> None:
    """Promote a representative's enterprises when the representative reaches VERIFIED."""
    wrapper = events_pb2.IdentityEvent.FromString(consumed.event.data)
    kind = wrapper.WhichOneof("event")
    if kind is None:
        raise UnknownEventType(f"empty identity event {consumed.event.type!r}")
    if getattr(wrapper, kind).DESCRIPTOR.full_name != consumed.event.type:
        raise UnknownEventType(f"ce_type {consumed.event.type} does not match the payload")
    if kind != "kyc_level_changed":
        return
    changed = wrapper.kyc_level_changed
    if (
        changed.party.kind == party_pb2.PartyRef.PARTY_KIND_CUSTOMER
        and changed.to_level == events_pb2.KYC_LEVEL_VERIFIED
    ):
        await kyc.follow_representative(changed.party.party_id, ctx=ctx)
