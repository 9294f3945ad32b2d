"""Building payroll's outbox events: a ``PayrollEvent`` wrapper per record, CloudEvents headers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.payroll.v1 import events_pb2
from zerocontact.platform.outbox import OutboxEvent, protobuf_event

SOURCE = "/zerocontact/payroll"
_NAMESPACE = uuid.UUID("6f1c1d2e-8b0a-4b7e-9a51-3c0f6f7d2a10")


def deterministic_id(*parts: str) -> str:
    """An event id derived from what the event is about, so a re-emission has the same ce_id."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def timestamp(moment: datetime | None = None) -> Timestamp:
    """A protobuf Timestamp (UTC)."""
    stamp = Timestamp()
    stamp.FromDatetime((moment or datetime.now(UTC)).astimezone(UTC))
    return stamp


def outbox_event(
    *,
    topic: str,
    employer_id: str,
    field: str,
    message: Message,
    subject: str,
    traceparent: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> OutboxEvent:
    """Wrap ``message`` in ``PayrollEvent.<field>``; keyed by the employer (ordered per party)."""
    wrapper = events_pb2.PayrollEvent()
    getattr(wrapper, field).CopyFrom(message)
    return protobuf_event(
        wrapper,
        topic=topic,
        key=employer_id,
        source=SOURCE,
        subject=subject,
        time=time,
        traceparent=traceparent,
        event_id=event_id,
    )
