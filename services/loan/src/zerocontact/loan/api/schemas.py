"""Request and response bodies of the loan API (OpenAPI schemas); amounts are decimal strings."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, Field, model_validator

from zerocontact.loan.domain.loans import Application, Loan
from zerocontact.loan.domain.products import Product
from zerocontact.loan.handlers import RepaymentResult
from zerocontact.platform.money import Money

PartyId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=3)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]


def _amount(money: Money | None) -> str | None:
    return str(money.to_decimal()) if money is not None else None


# --- views ------------------------------------------------------------------------------------


class ReasonView(BaseModel):
    code: str
    description: str


class ProductView(BaseModel):
    product_id: str
    name: str
    currency: str
    min_amount: str
    max_amount: str
    min_term_months: int
    max_term_months: int
    annual_rate: str
    rate_after_discount: str
    repayment_method: str
    min_kyc_level: str
    funders: list[dict[str, Any]]
    discount: dict[str, str] | None

    @classmethod
    def of(cls, p: Product) -> ProductView:
        return cls(
            product_id=p.product_id,
            name=p.name,
            currency=p.currency,
            min_amount=str(p.min_amount.to_decimal()),
            max_amount=str(p.max_amount.to_decimal()),
            min_term_months=p.min_term_months,
            max_term_months=p.max_term_months,
            annual_rate=str(p.annual_rate),
            rate_after_discount=f"{p.rate:.4f}",
            repayment_method=str(p.method),
            min_kyc_level=str(p.min_kyc_level),
            funders=[{"funder_id": f.funder_id, "share_bps": f.share_bps} for f in p.funders],
            discount={
                "programme_id": p.discount.programme_id,
                "fraction": str(p.discount.fraction),
                "paid_by": str(p.discount.payer),
                "payer_id": p.discount.payer_id,
            }
            if p.discount
            else None,
        )


class ApplicationView(BaseModel):
    application_id: str
    party_id: str
    product_id: str
    amount: str
    currency: str
    term_months: int
    state: str
    submitted_at: datetime
    decided_at: datetime | None
    offered_amount: str | None
    annual_rate: str | None
    credit_limit: str | None
    offer_expires_at: datetime | None
    risk_score: int | None
    risk_band: str | None
    reasons: list[ReasonView]
    loan_id: str | None

    @classmethod
    def of(cls, a: Application) -> ApplicationView:
        d = a.decision
        return cls(
            application_id=a.id,
            party_id=a.party_id,
            product_id=a.product_id,
            amount=str(a.amount.to_decimal()),
            currency=a.amount.currency,
            term_months=a.term_months,
            state=str(a.state),
            submitted_at=a.submitted_at,
            decided_at=a.decided_at,
            offered_amount=_amount(d.offered_amount) if d else None,
            annual_rate=f"{d.annual_rate:.4f}" if d and d.annual_rate is not None else None,
            credit_limit=_amount(d.credit_limit) if d else None,
            offer_expires_at=d.offer_expires_at if d else None,
            risk_score=d.risk_score if d else None,
            risk_band=str(d.risk_band) if d else None,
            reasons=[ReasonView(code=r.code, description=r.description) for r in d.reasons]
            if d
            else [],
            loan_id=a.loan_id,
        )


class InstallmentView(BaseModel):
    number: int
    due_date: date
    principal: str
    interest: str
    paid_principal: str
    paid_interest: str
    penalty_accrued: str
    paid_penalty: str


class LoanView(BaseModel):
    loan_id: str
    application_id: str
    party_id: str
    product_id: str
    state: str
    principal: str
    currency: str
    annual_rate: str
    term_months: int
    repayment_method: str
    funders: list[dict[str, Any]]
    disbursed_at: datetime | None
    rail_reference: str | None
    failure: str | None
    delinquency_bucket: str
    schedule: list[InstallmentView]

    @classmethod
    def of(cls, loan: Loan) -> LoanView:
        return cls(
            loan_id=loan.id,
            application_id=loan.application_id,
            party_id=loan.party_id,
            product_id=loan.product_id,
            state=str(loan.state),
            principal=str(loan.principal.to_decimal()),
            currency=loan.principal.currency,
            annual_rate=f"{loan.annual_rate:.4f}",
            term_months=loan.term_months,
            repayment_method=loan.method,
            funders=[
                {"funder_id": f.funder_id, "share_bps": f.share_bps, "amount": _amount(f.amount)}
                for f in loan.funders
            ],
            disbursed_at=loan.disbursed_at,
            rail_reference=loan.rail_reference,
            failure=loan.failure,
            delinquency_bucket=str(loan.bucket),
            schedule=[
                InstallmentView(
                    number=i.number,
                    due_date=i.due_date,
                    principal=str(i.principal.to_decimal()),
                    interest=str(i.interest.to_decimal()),
                    paid_principal=str(i.paid_principal.to_decimal()),
                    paid_interest=str(i.paid_interest.to_decimal()),
                    penalty_accrued=str(i.penalty_accrued.to_decimal()),
                    paid_penalty=str(i.paid_penalty.to_decimal()),
                )
                for i in loan.installments
            ],
        )


class RepaymentView(BaseModel):
    repayment_id: str
    loan_id: str
    principal: str
    interest: str
    penalty: str
    subsidy: str
    settled: bool
    loan_state: str

    @classmethod
    def of(cls, result: RepaymentResult) -> RepaymentView:
        return cls(
            repayment_id=result.repayment_id,
            loan_id=result.loan.id,
            principal=str(result.principal.to_decimal()),
            interest=str(result.interest.to_decimal()),
            penalty=str(result.penalty.to_decimal()),
            subsidy=str(result.subsidy.to_decimal()),
            settled=result.settled,
            loan_state=str(result.loan.state),
        )


# --- requests ---------------------------------------------------------------------------------


class ApplyRequest(BaseModel):
    party_id: PartyId
    product_id: str = Field(min_length=1, max_length=64)
    amount: Amount = Field(description="major units, e.g. 50000.00")
    currency: Currency
    term_months: int = Field(ge=1, le=360)
    purpose: str = Field(min_length=1, max_length=200)
    device_id: str = Field(min_length=1, max_length=128)
    source_address: str | None = Field(
        default=None, max_length=64, description="the end user's address, as the gateway saw it"
    )


class RepayRequest(BaseModel):
    amount: Amount
    currency: Currency


class RevenueReportRequest(BaseModel):
    report_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    party_id: PartyId
    platform_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    revenue: Annotated[Decimal, Field(ge=0, max_digits=18, decimal_places=3)]
    currency: Currency
    period_start: AwareDatetime
    period_end: AwareDatetime

    @model_validator(mode="after")
    def _period(self) -> RevenueReportRequest:
        if self.period_end <= self.period_start:
            raise ValueError("period_end must be after period_start")
        return self


class OverdueScanRequest(BaseModel):
    as_of: date | None = Field(default=None, description="the day to scan as of (default today)")
