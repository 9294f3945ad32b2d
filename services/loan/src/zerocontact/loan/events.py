"""Loan's domain facts as ``zerocontact.loan.v1.LoanEvent`` CloudEvents for the outbox."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp

from zerocontact.loan.domain.colending import FunderPart
from zerocontact.loan.domain.decisions import Decision, Reason, RiskBand
from zerocontact.loan.domain.loans import Application, Loan
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.domain.servicing import Allocation
from zerocontact.loan.v1 import events_pb2
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxEvent, protobuf_event
from zerocontact.signals.v1 import risk_pb2

SOURCE = "/zerocontact/loan"

BAND_TO_PROTO = {
    RiskBand.LOW: risk_pb2.RISK_BAND_LOW,
    RiskBand.MEDIUM: risk_pb2.RISK_BAND_MEDIUM,
    RiskBand.HIGH: risk_pb2.RISK_BAND_HIGH,
    RiskBand.REJECT: risk_pb2.RISK_BAND_REJECT,
}
BAND_FROM_PROTO = {v: k for k, v in BAND_TO_PROTO.items()}
BUCKET_TO_PROTO = {
    Bucket.DPD_1_30: events_pb2.DELINQUENCY_BUCKET_DPD_1_30,
    Bucket.DPD_31_60: events_pb2.DELINQUENCY_BUCKET_DPD_31_60,
    Bucket.DPD_61_90: events_pb2.DELINQUENCY_BUCKET_DPD_61_90,
    Bucket.DPD_90_PLUS: events_pb2.DELINQUENCY_BUCKET_DPD_90_PLUS,
}


def timestamp(moment: datetime) -> Timestamp:
    """A protobuf Timestamp of an aware datetime."""
    ts = Timestamp()
    ts.FromDatetime(moment)
    return ts


def _wrap(
    wrapper: events_pb2.LoanEvent,
    *,
    party_id: str,
    subject: str,
    moment: datetime,
    topic: str,
) -> OutboxEvent:
    return protobuf_event(
        wrapper,
        topic=topic,
        key=party_id,
        source=SOURCE,
        subject=subject,
        time=moment,
    )


def _reasons(target: object, reasons: Sequence[Reason]) -> None:
    for reason in reasons:
        target.add(code=reason.code, description=reason.description)  # type: ignore[attr-defined]


def application_submitted(app: Application, *, topic: str) -> OutboxEvent:
    """LoanApplicationSubmitted: the signals answer it with a RiskAssessment."""
    wrapper = events_pb2.LoanEvent()
    e = wrapper.loan_application_submitted
    e.application_id = app.id
    e.party_id = app.party_id
    e.product_id = app.product_id
    e.amount.CopyFrom(app.amount.to_proto())
    e.term_months = app.term_months
    e.purpose = app.purpose
    e.device_id = app.device_id
    e.source_address = app.source_address
    e.submitted_at.CopyFrom(timestamp(app.submitted_at))
    return _wrap(
        wrapper,
        party_id=app.party_id,
        subject=app.id,
        moment=app.submitted_at,
        topic=topic,
    )


def decided(app: Application, decision: Decision, *, now: datetime, topic: str) -> OutboxEvent:
    """LoanApproved or LoanDeclined, with the reasons."""
    wrapper = events_pb2.LoanEvent()
    if decision.approved:
        assert decision.offered_amount is not None and decision.credit_limit is not None
        assert decision.offer_expires_at is not None
        a = wrapper.loan_approved
        a.application_id = app.id
        a.party_id = app.party_id
        a.offered_amount.CopyFrom(decision.offered_amount.to_proto())
        a.annual_rate = f"{decision.annual_rate:.4f}"
        a.term_months = app.term_months
        a.credit_limit.CopyFrom(decision.credit_limit.to_proto())
        a.risk_score = decision.risk_score
        a.risk_band = BAND_TO_PROTO[decision.risk_band]
        _reasons(a.reasons, decision.reasons)
        a.decided_at.CopyFrom(timestamp(now))
        a.offer_expires_at.CopyFrom(timestamp(decision.offer_expires_at))
    else:
        d = wrapper.loan_declined
        d.application_id = app.id
        d.party_id = app.party_id
        d.risk_score = decision.risk_score
        d.risk_band = BAND_TO_PROTO[decision.risk_band]
        _reasons(d.reasons, decision.reasons)
        d.decided_at.CopyFrom(timestamp(now))
    return _wrap(
        wrapper,
        party_id=app.party_id,
        subject=app.id,
        moment=now,
        topic=topic,
    )


def offer_accepted(app: Application, *, topic: str) -> OutboxEvent:
    """LoanOfferAccepted."""
    assert app.loan_id is not None and app.accepted_at is not None
    wrapper = events_pb2.LoanEvent()
    e = wrapper.loan_offer_accepted
    e.application_id = app.id
    e.loan_id = app.loan_id
    e.party_id = app.party_id
    e.accepted_at.CopyFrom(timestamp(app.accepted_at))
    return _wrap(
        wrapper,
        party_id=app.party_id,
        subject=app.loan_id,
        moment=app.accepted_at,
        topic=topic,
    )


def disbursed(loan: Loan, funders: Sequence[FunderPart], *, topic: str) -> OutboxEvent:
    """LoanDisbursed, with each funder's part."""
    assert loan.disbursed_at is not None and loan.rail_reference is not None
    wrapper = events_pb2.LoanEvent()
    e = wrapper.loan_disbursed
    e.loan_id = loan.id
    e.application_id = loan.application_id
    e.party_id = loan.party_id
    e.principal.CopyFrom(loan.principal.to_proto())
    for part in funders:
        e.funders.add(
            funder_id=part.funder_id, share_bps=part.share_bps, amount=part.amount.to_proto()
        )
    e.rail_reference = loan.rail_reference
    e.disbursed_at.CopyFrom(timestamp(loan.disbursed_at))
    return _wrap(
        wrapper,
        party_id=loan.party_id,
        subject=loan.id,
        moment=loan.disbursed_at,
        topic=topic,
    )


def repayment_received(
    loan: Loan,
    allocation: Allocation,
    *,
    repayment_id: str,
    amount: Money,
    now: datetime,
    topic: str,
) -> OutboxEvent:
    """RepaymentReceived, with its allocation to penalty, interest and principal."""
    wrapper = events_pb2.LoanEvent()
    e = wrapper.repayment_received
    e.loan_id = loan.id
    e.party_id = loan.party_id
    e.repayment_id = repayment_id
    e.amount.CopyFrom(amount.to_proto())
    e.principal.CopyFrom(allocation.principal.to_proto())
    e.interest.CopyFrom(allocation.interest.to_proto())
    e.penalty.CopyFrom(allocation.penalty.to_proto())
    e.installment_number = allocation.first_installment
    e.days_late = allocation.days_late
    e.received_at.CopyFrom(timestamp(now))
    return _wrap(
        wrapper,
        party_id=loan.party_id,
        subject=loan.id,
        moment=now,
        topic=topic,
    )


def settled(loan: Loan, *, early_payoff: bool, now: datetime, topic: str) -> OutboxEvent:
    """LoanSettled."""
    wrapper = events_pb2.LoanEvent()
    e = wrapper.loan_settled
    e.loan_id = loan.id
    e.party_id = loan.party_id
    e.early_payoff = early_payoff
    e.settled_at.CopyFrom(timestamp(now))
    return _wrap(
        wrapper,
        party_id=loan.party_id,
        subject=loan.id,
        moment=now,
        topic=topic,
    )


def overdue(
    loan: Loan,
    *,
    installment_number: int,
    days_past_due: int,
    bucket: Bucket,
    amount: Money,
    now: datetime,
    topic: str,
) -> OutboxEvent:
    """LoanOverdue: the loan entered ``bucket``."""
    wrapper = events_pb2.LoanEvent()
    e = wrapper.loan_overdue
    e.loan_id = loan.id
    e.party_id = loan.party_id
    e.installment_number = installment_number
    e.days_past_due = days_past_due
    e.bucket = BUCKET_TO_PROTO[bucket]
    e.overdue_amount.CopyFrom(amount.to_proto())
    e.detected_at.CopyFrom(timestamp(now))
    return _wrap(
        wrapper,
        party_id=loan.party_id,
        subject=loan.id,
        moment=now,
        topic=topic,
    )


def revenue_reported(
    *,
    report_id: str,
    party_id: str,
    platform_id: str,
    revenue: Money,
    period_start: datetime,
    period_end: datetime,
    now: datetime,
    topic: str,
) -> OutboxEvent:
    """MerchantRevenueReported (input to the risk signals)."""
    wrapper = events_pb2.LoanEvent()
    e = wrapper.merchant_revenue_reported
    e.report_id = report_id
    e.party_id = party_id
    e.platform_id = platform_id
    e.revenue.CopyFrom(revenue.to_proto())
    e.period_start.CopyFrom(timestamp(period_start))
    e.period_end.CopyFrom(timestamp(period_end))
    e.reported_at.CopyFrom(timestamp(now))
    return _wrap(
        wrapper,
        party_id=party_id,
        subject=report_id,
        moment=now,
        topic=topic,
    )
