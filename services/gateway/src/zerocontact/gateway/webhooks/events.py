"""The events a partner can receive by webhook, their owners and their JSON bodies.

A body is ``{"id", "type", "created", "data"}``: ``id`` is the event's CloudEvents id (the
same on every attempt and replay: receivers dedupe by it), ``created`` its time (RFC 3339),
``data`` the event's fields as proto3 JSON (amounts are ``Money`` with ``minor_units`` as a
string: never a float) less everything personal: fields marked ``debug_redact``, devices,
addresses, rail references and actors are left out, and a risk alert's reasons are the rules'
sentences, as on the stream.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message

from zerocontact.gateway.watch import Notice

# Fields never sent, whatever the event (personal or internal).
_LEFT_OUT = frozenset(
    {"device_id", "source_address", "rail_reference", "funders", "submitted_by", "approved_by",
     "actor", "card_masked", "purpose", "payee_name", "card_number"}
)  # fmt: skip


@dataclass(frozen=True)
class EventType:
    """A public event type: which topic event it is and how its owner is found."""

    name: str
    owners: tuple[tuple[str, str], ...]  # (ownership kind, field), first known wins


# keyed by the wrapper's oneof field name (unique across the three topics)
EVENT_TYPES: dict[str, EventType] = {
    "risk_alert": EventType("risk.alert.raised", (("party", "party_id"),)),
    "loan_application_submitted": EventType(
        "loan.application.submitted", (("application", "application_id"),)
    ),
    "loan_approved": EventType("loan.application.approved", (("application", "application_id"),)),
    "loan_declined": EventType("loan.application.declined", (("application", "application_id"),)),
    "loan_offer_accepted": EventType(
        "loan.offer.accepted", (("application", "application_id"), ("loan", "loan_id"))
    ),
    "loan_disbursed": EventType(
        "loan.disbursed", (("application", "application_id"), ("loan", "loan_id"))
    ),
    "repayment_received": EventType("loan.repayment.received", (("loan", "loan_id"),)),
    "loan_overdue": EventType("loan.overdue", (("loan", "loan_id"),)),
    "loan_settled": EventType("loan.settled", (("loan", "loan_id"),)),
    "payroll_batch_submitted": EventType("payroll.batch.submitted", (("batch", "batch_id"),)),
    "payroll_batch_refused": EventType("payroll.batch.refused", (("batch", "batch_id"),)),
    "payroll_batch_approved": EventType("payroll.batch.approved", (("batch", "batch_id"),)),
    "payroll_batch_completed": EventType("payroll.batch.completed", (("batch", "batch_id"),)),
}
TYPE_NAMES = frozenset(t.name for t in EVENT_TYPES.values())
ALL = "*"


def _data(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    for field in message.DESCRIPTOR.fields:
        if field.name in _LEFT_OUT or field.GetOptions().debug_redact:
            data.pop(field.name, None)
    return data


def body(notice: Notice, event_type: EventType) -> str:
    """The JSON body of ``notice`` (compact, keys sorted: the bytes that are signed)."""
    message = notice.message
    data = _data(message)
    if notice.kind == "risk_alert":
        data["reasons"] = [r.description for r in message.reasons]
    return json.dumps(
        {
            "id": notice.event_id,
            "type": event_type.name,
            "created": notice.time.isoformat().replace("+00:00", "Z"),
            "data": data,
        },
        separators=(",", ":"),
        sort_keys=True,
        ensure_ascii=False,
    )
