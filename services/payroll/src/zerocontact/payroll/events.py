"""Payroll's outbox events: one builder per event, a ``PayrollEvent`` wrapper, CloudEvents headers.

Handlers and the batch runner never build protobuf messages themselves; they call these.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.payroll.domain.aggregates import GigPayout
from zerocontact.payroll.v1 import events_pb2
from zerocontact.platform.money import Money
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
        event_id=event_id,
    )


# employers -------------------------------------------------------------------------------


def employer_onboarded(
    *, topic: str, employer_id: str, name: str, wallet_account: str, at: datetime
) -> OutboxEvent:
    """EmployerOnboarded: the wallet is open."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="employer_onboarded",
        message=events_pb2.EmployerOnboarded(
            employer_id=employer_id,
            name=name,
            wallet_account=wallet_account,
            onboarded_at=timestamp(at),
        ),
        subject=f"employer/{employer_id}",
    )


def agent_authorised(
    *, topic: str, employer_id: str, agent_id: str, actor: str, at: datetime
) -> OutboxEvent:
    """AgentAuthorised: an HR platform may act for the employer."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="agent_authorised",
        message=events_pb2.AgentAuthorised(
            employer_id=employer_id,
            agent_id=agent_id,
            actor=f"party:{actor}",
            authorised_at=timestamp(at),
        ),
        subject=f"employer/{employer_id}",
    )


# treasury: one record per movement id, so its event id is derived from that id ------------


def _treasury(
    *, topic: str, record_id: str, employer_id: str, field: str, message: Message
) -> OutboxEvent:
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field=field,
        message=message,
        subject=f"employer/{employer_id}",
        event_id=deterministic_id(record_id, field),
    )


def wallet_topped_up(
    *, topic: str, record_id: str, employer_id: str, rail_reference: str, amount: Money
) -> OutboxEvent:
    """WalletToppedUp: an incoming transfer was credited."""
    return _treasury(
        topic=topic,
        record_id=record_id,
        employer_id=employer_id,
        field="wallet_topped_up",
        message=events_pb2.WalletToppedUp(
            employer_id=employer_id,
            rail_reference=rail_reference,
            amount=amount.to_proto(),
            credited_at=timestamp(),
        ),
    )


def funds_redeemed(
    *, topic: str, record_id: str, employer_id: str, amount: Money, purpose: str
) -> OutboxEvent:
    """FundsRedeemed: money came back from the money-market holding for ``purpose``."""
    return _treasury(
        topic=topic,
        record_id=record_id,
        employer_id=employer_id,
        field="funds_redeemed",
        message=events_pb2.FundsRedeemed(
            employer_id=employer_id,
            amount=amount.to_proto(),
            purpose=purpose,
            redeemed_at=timestamp(),
        ),
    )


def funds_swept(
    *, topic: str, record_id: str, employer_id: str, amount: Money, business_day: str, at: datetime
) -> OutboxEvent:
    """FundsSwept: idle wallet money went into the money-market product."""
    return _treasury(
        topic=topic,
        record_id=record_id,
        employer_id=employer_id,
        field="funds_swept",
        message=events_pb2.FundsSwept(
            employer_id=employer_id,
            amount=amount.to_proto(),
            business_day=business_day,
            swept_at=timestamp(at),
        ),
    )


# batches ---------------------------------------------------------------------------------


def batch_refused(
    *,
    topic: str,
    batch_id: str,
    employer_id: str,
    invalid_items: int,
    reasons: Sequence[str],
    at: datetime,
) -> OutboxEvent:
    """PayrollBatchRefused: validation failed, nothing reserved."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="payroll_batch_refused",
        message=events_pb2.PayrollBatchRefused(
            batch_id=batch_id,
            employer_id=employer_id,
            invalid_items=invalid_items,
            reasons=reasons,
            refused_at=timestamp(at),
        ),
        subject=f"batch/{batch_id}",
    )


def batch_submitted(
    *,
    topic: str,
    batch_id: str,
    employer_id: str,
    item_count: int,
    control_sum: Money,
    submitted_by: str,
    scheduled_for: datetime | None,
    at: datetime,
) -> OutboxEvent:
    """PayrollBatchSubmitted: stored, waiting for approval."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="payroll_batch_submitted",
        message=events_pb2.PayrollBatchSubmitted(
            batch_id=batch_id,
            employer_id=employer_id,
            item_count=item_count,
            control_sum=control_sum.to_proto(),
            submitted_by=f"party:{submitted_by}",
            scheduled_for=timestamp(scheduled_for) if scheduled_for else None,
            submitted_at=timestamp(at),
        ),
        subject=f"batch/{batch_id}",
    )


def batch_approved(
    *,
    topic: str,
    batch_id: str,
    employer_id: str,
    approved_by: str,
    assurance_level: str,
    reserved: Money,
    at: datetime,
) -> OutboxEvent:
    """PayrollBatchApproved: approved and reserved (once per batch: a derived id)."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="payroll_batch_approved",
        message=events_pb2.PayrollBatchApproved(
            batch_id=batch_id,
            employer_id=employer_id,
            approved_by=f"party:{approved_by}",
            assurance_level=assurance_level,
            reserved=reserved.to_proto(),
            approved_at=timestamp(at),
        ),
        subject=f"batch/{batch_id}",
        event_id=deterministic_id(batch_id, "approved"),
    )


def batch_completed(
    *,
    topic: str,
    batch_id: str,
    employer_id: str,
    status: str,
    paid_items: int,
    failed_items: int,
    paid: Money,
    released: Money,
    at: datetime,
) -> OutboxEvent:
    """PayrollBatchCompleted: every item is final, the unused reserve released."""
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field="payroll_batch_completed",
        message=events_pb2.PayrollBatchCompleted(
            batch_id=batch_id,
            employer_id=employer_id,
            status=getattr(events_pb2, f"PAYMENT_STATUS_{status}"),
            paid_items=paid_items,
            failed_items=failed_items,
            paid=paid.to_proto(),
            released=released.to_proto(),
            completed_at=timestamp(at),
        ),
        subject=f"batch/{batch_id}",
        event_id=deterministic_id(batch_id, "completed"),
    )


def item_event(*, topic: str, employer_id: str, outcome: Mapping[str, Any]) -> OutboxEvent:
    """SalaryPaid or SalaryPaymentFailed of a stored outcome; its id derives from the outcome."""
    amount = Money(outcome["currency"], int(outcome["amount_minor"])).to_proto()
    when = outcome["decided_at"]
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    message: Message
    if outcome["state"] == "PAID":
        kind = "salary_paid"
        message = events_pb2.SalaryPaid(
            batch_id=outcome["batch_id"],
            employer_id=employer_id,
            end_to_end_id=outcome["end_to_end_id"],
            card_masked=outcome["card_masked"],
            bank=outcome["bank"],
            amount=amount,
            rail_reference=outcome["rail_reference"],
            attempts=int(outcome["attempts"]),
            paid_at=timestamp(when),
            payee_party_id=outcome.get("customer_id") or "",
        )
    else:
        kind = "salary_payment_failed"
        message = events_pb2.SalaryPaymentFailed(
            batch_id=outcome["batch_id"],
            employer_id=employer_id,
            end_to_end_id=outcome["end_to_end_id"],
            card_masked=outcome["card_masked"],
            amount=amount,
            reason_code=outcome["reason_code"],
            reason=outcome["reason"],
            attempts=int(outcome["attempts"]),
            failed_at=timestamp(when),
        )
    return outbox_event(
        topic=topic,
        employer_id=employer_id,
        field=kind,
        message=message,
        subject=f"batch/{outcome['batch_id']}/item/{outcome['end_to_end_id']}",
        event_id=deterministic_id(outcome["_id"], kind),
        time=when,
    )


# gig payouts -----------------------------------------------------------------------------


def gig_payout_paid(*, topic: str, payout: GigPayout, at: datetime) -> OutboxEvent:
    """GigPayoutPaid: the net reached the worker, the tax is withheld."""
    return _gig(
        topic=topic,
        payout=payout,
        field="gig_payout_paid",
        message=events_pb2.GigPayoutPaid(
            payout_id=payout.payout_id,
            employer_id=payout.employer_id,
            card_masked=payout.card_masked,
            gross=payout.gross.to_proto(),
            tax_withheld=payout.tax.to_proto(),
            net=(payout.gross - payout.tax).to_proto(),
            paid_at=timestamp(at),
        ),
    )


def gig_payout_failed(
    *, topic: str, payout: GigPayout, reason_code: str, at: datetime
) -> OutboxEvent:
    """GigPayoutFailed: the rail refused; the hold is released."""
    return _gig(
        topic=topic,
        payout=payout,
        field="gig_payout_failed",
        message=events_pb2.GigPayoutFailed(
            payout_id=payout.payout_id,
            employer_id=payout.employer_id,
            reason_code=reason_code,
            failed_at=timestamp(at),
        ),
    )


def _gig(*, topic: str, payout: GigPayout, field: str, message: Message) -> OutboxEvent:
    return outbox_event(
        topic=topic,
        employer_id=payout.employer_id,
        field=field,
        message=message,
        subject=f"gig/{payout.payout_id}",
        event_id=deterministic_id(payout.payout_id, field),
    )
