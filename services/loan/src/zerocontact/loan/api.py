"""HTTP routes of the loan service (OpenAPI at /docs). Every mutating call takes an
``Idempotency-Key``; refusals are RFC 9457 problems; bad input is a 422 naming each field."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, Field, SecretStr, model_validator

from zerocontact.loan import handlers
from zerocontact.loan.authority import Caller
from zerocontact.loan.domain.loans import Application, Loan
from zerocontact.loan.domain.products import Product
from zerocontact.loan.handlers import LoanDeps
from zerocontact.platform.auth import InvalidToken, shared_credential
from zerocontact.platform.errors import Forbidden, Invalid, NotFound
from zerocontact.platform.money import InvalidAmount, Money, UnknownCurrency
from zerocontact.platform.tracing import child_traceparent

IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        pattern=r"^[A-Za-z0-9_-]{8,64}$",
        description="Client-chosen key; a retry with the same key returns the first result.",
    ),
]
ResourceId = Annotated[str, Path(pattern=r"^[0-9a-f-]{36}$")]
PartyId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]
Amount = Annotated[Decimal, Field(gt=0, max_digits=18, decimal_places=3)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]

_bearer = HTTPBearer(auto_error=False, description="An access token issued by identity")
Bearer = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


class InvalidMoney(Invalid):
    """An amount the currency cannot represent."""

    code = "invalid_amount"


class OperatorOnly(Forbidden):
    """The admin API needs the operator credential."""

    code = "operator_only"


def deps_of(request: Request) -> LoanDeps:
    """The handlers' dependencies built in the lifespan."""
    deps: LoanDeps = request.app.state.deps.loan
    return deps


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise InvalidToken("a bearer access token is required")
    return credentials.credentials


async def caller(request: Request, credentials: Bearer) -> Caller:
    """Any verified bearer (AAL1 is enough to apply and to read)."""
    result: Caller = await request.app.state.deps.authority.authenticate(_token(credentials))
    return result


async def step_up_caller(request: Request, credentials: Bearer) -> Caller:
    """A bearer with AAL2 and a recent authentication (to accept an offer)."""
    result: Caller = await request.app.state.deps.authority.authenticate_step_up(
        _token(credentials)
    )
    return result


def _operator_key(request: Request) -> SecretStr:
    key: SecretStr = request.app.state.deps.settings.operator_key
    return key


# The operator credential of the admin API.
operator = shared_credential(
    "X-Operator-Key",
    _operator_key,
    refusal=lambda: OperatorOnly("the admin API needs the operator credential"),
)


def _money(amount: Decimal, currency: str, field: str) -> Money:
    try:
        return Money.of(amount, currency)
    except UnknownCurrency as exc:
        raise InvalidMoney("unknown currency", field="body.currency") from exc
    except InvalidAmount as exc:
        # The message names the rule, never the value (422 bodies do not echo input).
        raise InvalidMoney(f"more decimal places than {currency} has", field=field) from exc


def _traceparent(request: Request) -> str:
    return child_traceparent(request.headers.get("traceparent"))


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


# --- routes -----------------------------------------------------------------------------------

products_router = APIRouter(prefix="/v1/products", tags=["products"])
applications_router = APIRouter(prefix="/v1/applications", tags=["applications"])
loans_router = APIRouter(prefix="/v1/loans", tags=["loans"])
reports_router = APIRouter(prefix="/v1/merchant-revenue-reports", tags=["merchant revenue"])
admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(operator)])


@products_router.get("")
async def list_products(request: Request) -> list[ProductView]:
    """Every product on offer."""
    return [ProductView.of(p) for p in deps_of(request).catalog.values()]


@products_router.get("/{product_id}")
async def get_product(
    product_id: Annotated[str, Path(max_length=64)], request: Request
) -> ProductView:
    """One product."""
    product = deps_of(request).catalog.get(product_id)
    if product is None:
        raise NotFound(f"no product {product_id!r}")
    return ProductView.of(product)


@applications_router.post("", status_code=202)
async def apply(
    body: ApplyRequest,
    key: IdempotencyKey,
    request: Request,
    who: Annotated[Caller, Depends(caller)],
) -> ApplicationView:
    """Apply for a loan; decided automatically once the risk assessment arrives."""
    deps = deps_of(request)
    await handlers.authorize(deps, party_id=body.party_id, subject=who.subject)
    app = await handlers.submit_application(
        handlers.SubmitApplication(
            idem_key=key,
            party_id=body.party_id,
            product_id=body.product_id,
            amount=_money(body.amount, body.currency, "body.amount"),
            term_months=body.term_months,
            purpose=body.purpose,
            device_id=body.device_id,
            source_address=body.source_address
            or (request.client.host if request.client else "unknown"),
        ),
        deps=deps,
        traceparent=_traceparent(request),
    )
    return ApplicationView.of(app)


@applications_router.get("/{application_id}")
async def get_application(
    application_id: ResourceId, request: Request, who: Annotated[Caller, Depends(caller)]
) -> ApplicationView:
    """An application with its decision and reasons."""
    deps = deps_of(request)
    app = await deps.repo.application(application_id)
    if app is None:
        raise NotFound(f"application {application_id} does not exist")
    await handlers.authorize(deps, party_id=app.party_id, subject=who.subject)
    return ApplicationView.of(app)


@applications_router.post("/{application_id}/acceptance")
async def accept(
    application_id: ResourceId,
    key: IdempotencyKey,
    request: Request,
    who: Annotated[Caller, Depends(step_up_caller)],
) -> LoanView:
    """Accept the approved offer (AAL2, recent authentication): the loan is booked and paid
    out. Accepting again returns the same loan; the money moves once."""
    loan = await handlers.accept_offer(
        application_id=application_id,
        subject=who.subject,
        deps=deps_of(request),
        traceparent=_traceparent(request),
    )
    return LoanView.of(loan)


@loans_router.get("/{loan_id}")
async def get_loan(
    loan_id: ResourceId, request: Request, who: Annotated[Caller, Depends(caller)]
) -> LoanView:
    """A loan with its schedule and what has been paid."""
    deps = deps_of(request)
    loan = await deps.repo.loan(loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} does not exist")
    await handlers.authorize(deps, party_id=loan.party_id, subject=who.subject)
    return LoanView.of(loan)


@loans_router.get("/{loan_id}/payoff")
async def get_payoff(
    loan_id: ResourceId, request: Request, who: Annotated[Caller, Depends(caller)]
) -> dict[str, str]:
    """What settles the loan today (early payoff: interest to today, future interest waived)."""
    deps = deps_of(request)
    loan = await deps.repo.loan(loan_id)
    if loan is None:
        raise NotFound(f"loan {loan_id} does not exist")
    await handlers.authorize(deps, party_id=loan.party_id, subject=who.subject)
    today = datetime.now(UTC).date()
    amount = handlers.payoff_quote(loan, as_of=today)
    return {
        "loan_id": loan.id,
        "as_of": today.isoformat(),
        "amount": str(amount.to_decimal()),
        "currency": amount.currency,
    }


@loans_router.post("/{loan_id}/repayments")
async def repay(
    loan_id: ResourceId,
    body: RepayRequest,
    key: IdempotencyKey,
    request: Request,
    who: Annotated[Caller, Depends(caller)],
) -> RepaymentView:
    """Repay from the borrower's settlement account: scheduled, partial or the payoff amount.
    The idempotency key is the repayment id."""
    result = await handlers.repay(
        loan_id=loan_id,
        repayment_id=key,
        amount=_money(body.amount, body.currency, "body.amount"),
        subject=who.subject,
        deps=deps_of(request),
        traceparent=_traceparent(request),
    )
    return _repayment_view(result)


def _repayment_view(result: handlers.RepaymentResult) -> RepaymentView:
    return RepaymentView(
        repayment_id=result.repayment_id,
        loan_id=result.loan.id,
        principal=str(result.principal.to_decimal()),
        interest=str(result.interest.to_decimal()),
        penalty=str(result.penalty.to_decimal()),
        subsidy=str(result.subsidy.to_decimal()),
        settled=result.settled,
        loan_state=str(result.loan.state),
    )


@reports_router.post("", status_code=202)
async def report_revenue(
    body: RevenueReportRequest, key: IdempotencyKey, request: Request
) -> dict[str, Any]:
    """A partner platform reports a merchant's sales (idempotent by platform and report id;
    the gateway authenticates the partner)."""
    added = await handlers.report_revenue(
        report_id=body.report_id,
        party_id=body.party_id,
        platform_id=body.platform_id,
        revenue=_money(body.revenue, body.currency, "body.revenue"),
        period_start=body.period_start,
        period_end=body.period_end,
        deps=deps_of(request),
        traceparent=_traceparent(request),
    )
    return {"report_id": body.report_id, "accepted": True, "duplicate": not added}


@admin_router.post("/overdue-scans")
async def run_overdue_scan(
    body: OverdueScanRequest,
    request: Request,
    key: Annotated[str | None, Header(alias="Idempotency-Key")] = None,
) -> dict[str, Any]:
    """Run overdue detection as of a day (default today). Idempotent by nature: a loan
    already in its bucket emits nothing, so the key is accepted but not needed."""
    as_of = body.as_of or datetime.now(UTC).date()
    found = await handlers.scan_overdue(as_of=as_of, deps=deps_of(request))
    return {
        "as_of": as_of.isoformat(),
        "entered_bucket": [
            {"loan_id": t.loan_id, "bucket": str(t.bucket), "days_past_due": t.days_past_due}
            for t in found
        ],
    }


@admin_router.post("/loans/{loan_id}/disbursement")
async def retry_disbursement(loan_id: ResourceId, request: Request) -> LoanView:
    """Drive a BOOKED loan's disbursement now (idempotent: pays at most once)."""
    return LoanView.of(await handlers.disburse_loan(loan_id, deps=deps_of(request)))


@admin_router.post("/loans/{loan_id}/repayments")
async def repay_as_of(
    loan_id: ResourceId,
    body: RepayRequest,
    key: IdempotencyKey,
    request: Request,
    as_of: Annotated[date | None, Query(description="value date (back office)")] = None,
) -> RepaymentView:
    """A back-office repayment with a value date (e.g. a payment received at a branch)."""
    result = await handlers.repay(
        loan_id=loan_id,
        repayment_id=key,
        amount=_money(body.amount, body.currency, "body.amount"),
        subject=None,
        deps=deps_of(request),
        traceparent=_traceparent(request),
        as_of=as_of,
    )
    return _repayment_view(result)
