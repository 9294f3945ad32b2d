"""The projection: balances per account, applied idempotently from ``skeleton.events.v1``."""

from __future__ import annotations

import logging
from typing import Any

from bson import Int64
from pymongo.asynchronous.collection import AsyncCollection

from zerocontact.platform.idempotency import apply_once
from zerocontact.platform.kafka.consumer import ConsumedEvent
from zerocontact.platform.money import Money
from zerocontact.skeleton.v1 import events_pb2

BALANCES = "balances"

log = logging.getLogger(__name__)


class UnknownEventType(ValueError):
    """The payload is not the event its ``ce_type`` header names (poison)."""


async def apply_skeleton_event(
    consumed: ConsumedEvent, *, balances: AsyncCollection[dict[str, Any]]
) -> bool:
    """Apply one event to the balances projection; False if it was applied before."""
    wrapper = events_pb2.SkeletonEvent.FromString(consumed.event.data)
    kind = wrapper.WhichOneof("event")
    if kind == "account_opened":
        opened = wrapper.account_opened
        if consumed.event.type != opened.DESCRIPTOR.full_name:
            raise UnknownEventType(f"ce_type {consumed.event.type} does not match the payload")
        update: dict[str, Any] = {
            "$set": {"holder_name": opened.holder_name, "opened_at": opened.opened_at.ToDatetime()},
            "$setOnInsert": {"balance_minor": Int64(0), "deposits": 0},
        }
        return await apply_once(
            balances, doc_id=opened.account_id, event_id=consumed.event.id, update=update
        )
    if kind == "deposit_recorded":
        deposit = wrapper.deposit_recorded
        if consumed.event.type != deposit.DESCRIPTOR.full_name:
            raise UnknownEventType(f"ce_type {consumed.event.type} does not match the payload")
        amount = Money.from_proto(deposit.amount)
        update = {
            "$inc": {"balance_minor": Int64(amount.minor_units), "deposits": 1},
            "$set": {"currency": amount.currency},
        }
        return await apply_once(
            balances, doc_id=deposit.account_id, event_id=consumed.event.id, update=update
        )
    # A newer producer's event this reader does not know yet: skip it (docs/contracts.md).
    log.info(
        "skipping an event this projection does not know", extra={"ce_type": consumed.event.type}
    )
    return False
