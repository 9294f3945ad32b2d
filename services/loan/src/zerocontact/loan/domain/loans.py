"""The application and loan aggregates and their transitions (pure)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from zerocontact.loan.domain.colending import FunderPart, split_by_share
from zerocontact.loan.domain.decisions import Decision, PartyFacts
from zerocontact.loan.domain.errors import (
    InvalidApplication,
    OfferNotAvailable,
    PartyNotVerified,
)
from zerocontact.loan.domain.products import Product
from zerocontact.loan.domain.schedule import Bucket, build_schedule
from zerocontact.loan.domain.servicing import InstallmentState
from zerocontact.platform.money import Money


def fingerprint(*parts: object) -> str:
    """A stable digest of a request, to tell a retry from a different request under one key."""
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:32]


class ApplicationState(StrEnum):
    """Where an application is; AWAITING_RISK until its assessment arrives."""

    AWAITING_RISK = "AWAITING_RISK"
    APPROVED = "APPROVED"
    DECLINED = "DECLINED"
    ACCEPTED = "ACCEPTED"


class LoanState(StrEnum):
    """A booked loan's life: BOOKED → DISBURSED → SETTLED (or DISBURSEMENT_FAILED)."""

    BOOKED = "BOOKED"
    DISBURSED = "DISBURSED"
    DISBURSEMENT_FAILED = "DISBURSEMENT_FAILED"
    SETTLED = "SETTLED"


@dataclass
class Application:
    """A loan application and, once decided, its decision."""

    id: str
    party_id: str
    product_id: str
    amount: Money
    term_months: int
    purpose: str
    device_id: str
    source_address: str
    submitted_at: datetime
    state: ApplicationState = ApplicationState.AWAITING_RISK
    version: int = 1
    decision: Decision | None = None
    decided_at: datetime | None = None
    assessment_id: str | None = None
    assessment_event_id: str | None = None
    loan_id: str | None = None
    accepted_at: datetime | None = None


def validate_application(
    product: Product, party: PartyFacts | None, *, amount: Money, term_months: int
) -> None:
    """Refuse what can never be approved, before anything is stored (4xx, nothing changes)."""
    if amount.currency != product.currency:
        raise InvalidApplication(
            f"{product.product_id} lends in {product.currency}", field="body.currency"
        )
    if not product.min_amount <= amount <= product.max_amount:
        raise InvalidApplication(
            f"{product.product_id} lends {product.min_amount.to_decimal()} to "
            f"{product.max_amount.to_decimal()} {product.currency}",
            field="body.amount",
        )
    if not product.min_term_months <= term_months <= product.max_term_months:
        raise InvalidApplication(
            f"{product.product_id} runs {product.min_term_months} to "
            f"{product.max_term_months} months",
            field="body.term_months",
        )
    if party is None:
        raise PartyNotVerified("the party has no verified identity (unknown to identity)")
    if party.kyc_level.rank < product.min_kyc_level.rank:
        raise PartyNotVerified(
            f"identity is verified to level {party.kyc_level}; {product.product_id} needs "
            f"{product.min_kyc_level}",
            kyc_level=str(party.kyc_level),
            required_kyc_level=str(product.min_kyc_level),
        )


def record_decision(
    application: Application,
    decision: Decision,
    *,
    assessment_id: str,
    assessment_event_id: str,
    now: datetime,
) -> bool:
    """Store the decision unless one was taken already; True if it changed the application."""
    if application.state is not ApplicationState.AWAITING_RISK:
        return False
    application.decision = decision
    application.state = (
        ApplicationState.APPROVED if decision.approved else ApplicationState.DECLINED
    )
    application.decided_at = now
    application.assessment_id = assessment_id
    application.assessment_event_id = assessment_event_id
    application.version += 1
    return True


def accept_offer(application: Application, *, loan_id: str, now: datetime) -> bool:
    """Accept the approved offer; False when it was accepted before (the same loan stands)."""
    if application.state is ApplicationState.ACCEPTED:
        return False
    if application.state is not ApplicationState.APPROVED or application.decision is None:
        raise OfferNotAvailable(
            f"application {application.id} is {application.state}, there is no offer to accept",
            state=str(application.state),
        )
    expires = application.decision.offer_expires_at
    if expires is not None and now > expires:
        raise OfferNotAvailable(f"the offer expired at {expires.isoformat()}", state="EXPIRED")
    application.state = ApplicationState.ACCEPTED
    application.loan_id = loan_id
    application.accepted_at = now
    application.version += 1
    return True


@dataclass
class Loan:
    """A booked loan: principal, funders, schedule and servicing state."""

    id: str
    application_id: str
    party_id: str
    product_id: str
    principal: Money
    annual_rate: Decimal  # the borrower's rate, after any discount
    full_rate: Decimal  # the funders' rate; the difference is the programme's subsidy
    penalty_rate: Decimal
    term_months: int
    method: str
    funders: tuple[FunderPart, ...]
    booked_at: datetime
    state: LoanState = LoanState.BOOKED
    version: int = 1
    disbursed_on: date | None = None
    disbursed_at: datetime | None = None
    rail_reference: str | None = None
    failure: str | None = None
    installments: tuple[InstallmentState, ...] = ()
    bucket: Bucket = Bucket.CURRENT
    settled_at: datetime | None = None
    repayments: dict[str, str] = field(default_factory=dict)  # repayment id -> fingerprint


def book_loan(application: Application, product: Product, *, loan_id: str, now: datetime) -> Loan:
    """The loan an accepted offer books, with each funder's part of the principal."""
    decision = application.decision
    assert decision is not None and decision.offered_amount is not None
    assert decision.annual_rate is not None
    return Loan(
        id=loan_id,
        application_id=application.id,
        party_id=application.party_id,
        product_id=product.product_id,
        principal=decision.offered_amount,
        annual_rate=decision.annual_rate,
        full_rate=product.annual_rate,
        penalty_rate=decision.annual_rate * product.penalty_rate_multiplier,
        term_months=application.term_months,
        method=str(product.method),
        funders=tuple(split_by_share(decision.offered_amount, product.funders)),
        booked_at=now,
    )


def mark_disbursed(loan: Loan, product: Product, *, rail_reference: str, now: datetime) -> bool:
    """Record the payout and start the schedule on its date; False if it was recorded before."""
    if loan.state is not LoanState.BOOKED:
        return False
    schedule = build_schedule(
        principal=loan.principal,
        annual_rate=loan.annual_rate,
        months=loan.term_months,
        method=product.method,
        start=now.date(),
    )
    loan.installments = tuple(InstallmentState.scheduled(i) for i in schedule)
    loan.state = LoanState.DISBURSED
    loan.disbursed_on = now.date()
    loan.disbursed_at = now
    loan.rail_reference = rail_reference
    loan.version += 1
    return True


def mark_disbursement_failed(loan: Loan, *, reason: str) -> bool:
    """The rail refused the payout for good (e.g. a closed account); False if not BOOKED."""
    if loan.state is not LoanState.BOOKED:
        return False
    loan.state = LoanState.DISBURSEMENT_FAILED
    loan.failure = reason
    loan.version += 1
    return True
