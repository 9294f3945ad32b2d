"""Kafka records in and out of the signals app: CloudEvents headers and protobuf values.

Inputs carry CloudEvents binary-mode headers and a serialized protobuf wrapper message; the
app reads ``ce_id`` and ``ce_type`` from the headers and decodes the value itself (the Faust
topics use the raw codec). Outputs are ``zerocontact.signals.v1.RiskEvent`` records with the
same kind of headers, their ids derived from the input event ids so that a redelivered input
yields the same output id. Pure: no Faust, no I/O.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.identity.v1 import events_pb2 as identity_pb
from zerocontact.loan.v1 import events_pb2 as loan_pb
from zerocontact.platform.kafka.cloudevents import CloudEvent, MalformedEvent, dataschema_for
from zerocontact.signals.scorecard import SCORECARD_VERSION, RuleOutcome, Scored
from zerocontact.signals.v1 import risk_pb2

__all__ = [
    "SOURCE",
    "Envelope",
    "MalformedEvent",
    "alert_record",
    "assessment_record",
    "decode_identity",
    "decode_loan",
    "envelope",
    "features_header",
    "read_features_header",
    "sent_header",
]

SOURCE: Final = "zerocontact.signals"
APPLICATION_TYPE: Final = "zerocontact.loan.v1.LoanApplicationSubmitted"
AUTH_FAILED_TYPE: Final = "zerocontact.identity.v1.AuthenticationFailed"
# Namespace of the signals' derived ids (uuid5 over the input event id): stable forever.
_NAMESPACE: Final = uuid.UUID("5b1f0f8e-6a53-4c1e-9a55-2d7d1b7f3c10")


@dataclass(frozen=True)
class Envelope:
    """The CloudEvents attributes the app needs from an input record."""

    id: str
    type: str


def envelope(headers: Sequence[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Envelope:
    """Read ``ce_id`` and ``ce_type``; :class:`MalformedEvent` when either is missing."""
    pairs: Iterable[tuple[str, bytes]] = (
        headers.items() if isinstance(headers, Mapping) else (headers or ())
    )
    ce_id = ce_type = ""
    for name, value in pairs:
        if name == "ce_id":
            ce_id = value.decode("utf-8", "replace")
        elif name == "ce_type":
            ce_type = value.decode("utf-8", "replace")
    if not ce_id or not ce_type:
        raise MalformedEvent("missing CloudEvents headers ce_id/ce_type")
    return Envelope(ce_id, ce_type)


def decode_loan(value: bytes | None) -> loan_pb.LoanEvent:
    """Parse a ``loan.events.v1`` value; :class:`MalformedEvent` when it is not one."""
    message = loan_pb.LoanEvent()
    try:
        message.ParseFromString(value or b"")
    except DecodeError as exc:
        raise MalformedEvent(f"not a LoanEvent: {exc}") from exc
    return message


def decode_identity(value: bytes | None) -> identity_pb.IdentityEvent:
    """Parse an ``identity.events.v1`` value; :class:`MalformedEvent` when it is not one."""
    message = identity_pb.IdentityEvent()
    try:
        message.ParseFromString(value or b"")
    except DecodeError as exc:
        raise MalformedEvent(f"not an IdentityEvent: {exc}") from exc
    return message


def derived_id(kind: str, source_id: str) -> str:
    """A UUIDv5 for ``kind`` derived from an input id: the same input, the same output id."""
    return str(uuid.uuid5(_NAMESPACE, f"{kind}:{source_id}"))


def sent_header(stage: str) -> tuple[str, bytes]:
    """``zc-sent-<stage>``: when ``stage`` forwarded the record (Unix seconds), so the time of
    each hop of the pipeline can be read from the last internal topic (the record's own
    timestamp stays the input event's, which the windows use)."""
    return (f"zc-sent-{stage}", f"{time.time():.6f}".encode())


def features_header(name: str, values: Mapping[str, int | Decimal]) -> tuple[str, bytes]:
    """A header carrying feature values from one pipeline stage to the next.

    Decimals travel as strings, so no value is rounded through a float.
    """
    encoded = {k: v if isinstance(v, int) else str(v) for k, v in values.items()}
    return (f"zc-features-{name}", json.dumps(encoded, separators=(",", ":")).encode())


def read_features_header(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, Decimal]:
    """Every feature value carried by ``zc-features-*`` headers."""
    found: dict[str, Decimal] = {}
    for name, value in headers or ():
        if name.startswith("zc-features-"):
            found.update({k: Decimal(v) for k, v in json.loads(value).items()})
    return found


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _record(
    event: risk_pb2.RiskEvent, *, event_id: str, subject: str, time: datetime
) -> tuple[bytes, list[tuple[str, bytes]]]:
    """(value, headers) of a RiskEvent; ``ce_type`` is the full name of the event it carries."""
    inner = getattr(event, event.WhichOneof("event") or "")
    cloud_event = CloudEvent(
        id=event_id,
        source=SOURCE,
        type=inner.DESCRIPTOR.full_name,
        subject=subject,
        data=event.SerializeToString(),
        time=time,
        dataschema=dataschema_for(risk_pb2.RiskEvent.DESCRIPTOR.full_name),
    )
    return cloud_event.data, cloud_event.headers()


def _rule_results(rules: Iterable[RuleOutcome]) -> list[risk_pb2.RuleResult]:
    return [
        risk_pb2.RuleResult(
            name=rule.name,
            threshold=str(rule.threshold),
            observed=str(rule.observed),
            triggered=rule.triggered,
            points=rule.points,
            description=rule.description,
        )
        for rule in rules
    ]


def assessment_record(
    *,
    application: loan_pb.LoanApplicationSubmitted,
    application_event_id: str,
    features: Sequence[tuple[str, Decimal, str]],
    scored: Scored,
    assessed_at: datetime,
) -> tuple[bytes, list[tuple[str, bytes]], str]:
    """(value, headers, assessment id) of the RiskAssessment answering one application."""
    assessment_id = derived_id("assessment", application_event_id)
    event = risk_pb2.RiskEvent(
        risk_assessment=risk_pb2.RiskAssessment(
            assessment_id=assessment_id,
            application_id=application.application_id,
            party_id=application.party_id,
            application_event_id=application_event_id,
            score=scored.score,
            band=int(scored.band),  # type: ignore[arg-type]  # Band mirrors RiskBand's numbers
            features=[
                risk_pb2.FeatureValue(name=name, value=str(value), window=window)
                for name, value, window in features
            ],
            rules=_rule_results(scored.rules),
            assessed_at=_timestamp(assessed_at),
            scorecard_version=SCORECARD_VERSION,
        )
    )
    value, headers = _record(
        event, event_id=assessment_id, subject=application.party_id, time=assessed_at
    )
    return value, headers, assessment_id


def alert_record(
    *,
    kind: risk_pb2.RiskAlertKind.ValueType,
    party_id: str,
    window_key: str,
    reasons: Sequence[RuleOutcome],
    device_id: str = "",
    raised_at: datetime | None = None,
) -> tuple[bytes, list[tuple[str, bytes]], str]:
    """(value, headers, alert id) of a RiskAlert; one id per kind, subject and window."""
    raised = raised_at or datetime.now(UTC)
    alert_id = derived_id(f"alert:{risk_pb2.RiskAlertKind.Name(kind)}", window_key)
    event = risk_pb2.RiskEvent(
        risk_alert=risk_pb2.RiskAlert(
            alert_id=alert_id,
            party_id=party_id,
            kind=kind,
            reasons=_rule_results(reasons),
            device_id=device_id,
            raised_at=_timestamp(raised),
        )
    )
    value, headers = _record(event, event_id=alert_id, subject=party_id, time=raised)
    return value, headers, alert_id
