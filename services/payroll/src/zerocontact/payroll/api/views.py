"""Request bodies and response shapes of payroll's API."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from zerocontact.payroll.api.deps import Amount
from zerocontact.payroll.domain.aggregates import Batch, Employer, GigPayout
from zerocontact.payroll.domain.batches import BatchState, batch_status

# requests --------------------------------------------------------------------------------


class OnboardRequest(BaseModel):
    """Onboard a VERIFIED enterprise as an employer."""

    employer_id: str = Field(
        pattern=r"^[0-9A-Za-z-]{8,64}$", description="identity's enterprise id"
    )
    maker_checker: bool = Field(default=False, description="approver must differ from submitter")
    sweep_threshold: Amount | None = Field(
        default=None, description="keep this much in the wallet; sweep the rest (none: no sweep)"
    )


class AgentRequest(BaseModel):
    """Authorise an HR platform to act for the employer."""

    agent_id: str = Field(pattern=r"^[0-9A-Za-z-]{8,64}$")


class TopUpRequest(BaseModel):
    """An incoming transfer to credit to the wallet."""

    rail_reference: str = Field(pattern=r"^[A-Za-z0-9_-]{6,64}$")
    amount: Amount


class Deductions(BaseModel):
    """Payslip deductions (optional)."""

    income_tax: Amount | None = None
    social_insurance: Amount | None = None
    housing_fund: Amount | None = None


class BatchItemIn(BaseModel):
    """One salary; the card number is validated (Luhn) and encrypted at rest."""

    payee_name: str = Field(max_length=140)
    card_number: str = Field(max_length=32)
    amount: Decimal = Field(max_digits=18, description="net pay, major units")
    end_to_end_id: str = Field(default="", max_length=35)
    customer_id: str = Field(default="", max_length=64, description="identity's customer id")
    gross: Decimal | None = Field(default=None, max_digits=18)
    deductions: Deductions = Field(default_factory=Deductions)


class BatchRequest(BaseModel):
    """A payroll batch as JSON."""

    items: list[BatchItemIn] = Field(max_length=100_000)
    item_count: int = Field(ge=0, le=100_000, description="must equal the number of items")
    control_sum: Decimal = Field(ge=0, max_digits=20, description="must equal the sum of amounts")
    scheduled_for: datetime | None = None


class GigPayoutRequest(BaseModel):
    """A per-task payout to a flexible worker (tax withheld)."""

    payee_name: str = Field(min_length=1, max_length=140)
    card_number: str = Field(min_length=13, max_length=32)
    gross: Amount
    task_reference: str = Field(min_length=1, max_length=64)


class BusinessDay(BaseModel):
    """A business day for sweep or yield accrual."""

    business_day: date


# responses -------------------------------------------------------------------------------


class BatchView(BaseModel):
    """A batch's state and pain.002 status."""

    batch_id: str
    employer_id: str
    state: str
    status: str
    item_count: int
    control_sum: str
    currency: str
    counts: dict[str, int]
    scheduled_for: datetime | None
    submitted_by: str
    approved_by: str | None


def batch_view(batch: Batch, counts: dict[str, int]) -> BatchView:
    """The batch with its item counts and pain.002 group status."""
    open_items = counts.get("PENDING", 0) + counts.get("SENT", 0)
    if batch.state == BatchState.REFUSED:
        status = "RJCT"
    elif batch.state == BatchState.SUBMITTED:
        status = "ACTC"
    elif batch.state == BatchState.APPROVED and not counts.get("PAID") and not counts.get("FAILED"):
        status = "ACCP"
    else:
        status = batch_status(counts.get("PAID", 0), counts.get("FAILED", 0), open_items)
    return BatchView(
        batch_id=batch.batch_id,
        employer_id=batch.employer_id,
        state=str(batch.state),
        status=status,
        item_count=batch.item_count,
        control_sum=str(batch.control_sum.to_decimal()),
        currency=batch.currency,
        counts=counts,
        scheduled_for=batch.scheduled_for,
        submitted_by=batch.submitted_by,
        approved_by=batch.approved_by,
    )


def employer_view(employer: Employer, balances: dict[str, Any]) -> dict[str, Any]:
    """The employer with its balances."""
    return {
        "employer_id": employer.employer_id,
        "name": employer.name,
        "maker_checker": employer.maker_checker,
        "agents": sorted(employer.agents),
        **balances,
    }


def gig_view(payout: GigPayout) -> dict[str, Any]:
    """A gig payout (card masked)."""
    return {
        "payout_id": payout.payout_id,
        "employer_id": payout.employer_id,
        "state": payout.state,
        "card": payout.card_masked,
        "bank": payout.bank,
        "currency": payout.currency,
        "gross_minor": payout.gross_minor,
        "tax_minor": payout.tax_minor,
        "net_minor": payout.net_minor,
        "reason_code": payout.reason_code,
    }
