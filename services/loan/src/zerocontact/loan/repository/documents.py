"""Stored forms of the loan aggregates: money as Int64 minor units, rates as decimal strings,
dates as ISO strings (they sort as dates do)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from bson import Int64

from zerocontact.loan.domain.colending import FunderPart
from zerocontact.loan.domain.decisions import Decision, Reason, RiskBand
from zerocontact.loan.domain.loans import Application, ApplicationState, Loan, LoanState
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.domain.servicing import InstallmentState, outstanding_principal
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import Document


def _money(minor: Any, currency: str) -> Money:
    return Money(currency, int(minor))


def _iso(value: date | None) -> str | None:
    return value.isoformat() if value else None


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


# --- applications --------------------------------------------------------------------------


def _decision_doc(d: Decision | None) -> Document | None:
    if d is None:
        return None
    return {
        "approved": d.approved,
        "risk_score": d.risk_score,
        "risk_band": str(d.risk_band),
        "reasons": [{"code": r.code, "description": r.description} for r in d.reasons],
        "offered_minor": Int64(d.offered_amount.minor_units) if d.offered_amount else None,
        "annual_rate": str(d.annual_rate) if d.annual_rate is not None else None,
        "credit_limit_minor": Int64(d.credit_limit.minor_units) if d.credit_limit else None,
        "offer_expires_at": d.offer_expires_at,
    }


def _decision(doc: Document | None, currency: str) -> Decision | None:
    if not doc:
        return None
    return Decision(
        approved=doc["approved"],
        risk_score=doc["risk_score"],
        risk_band=RiskBand(doc["risk_band"]),
        reasons=tuple(Reason(r["code"], r["description"]) for r in doc["reasons"]),
        offered_amount=_money(doc["offered_minor"], currency)
        if doc.get("offered_minor") is not None
        else None,
        annual_rate=Decimal(doc["annual_rate"]) if doc.get("annual_rate") else None,
        credit_limit=_money(doc["credit_limit_minor"], currency)
        if doc.get("credit_limit_minor") is not None
        else None,
        offer_expires_at=doc.get("offer_expires_at"),
    )


def application_fields(app: Application) -> Document:
    """The application's mutable fields (what a save writes)."""
    return {
        "state": str(app.state),
        "version": app.version,
        "decision": _decision_doc(app.decision),
        "decided_at": app.decided_at,
        "assessment_id": app.assessment_id,
        "assessment_event_id": app.assessment_event_id,
        "loan_id": app.loan_id,
        "accepted_at": app.accepted_at,
        # Until the recovery sweep has seen the loan document: the sweep reads only these
        # (an equality FerretDB answers from its index), never every accepted application.
        "loan_unconfirmed": app.state is ApplicationState.ACCEPTED,
        # For the exposure query: an open offer counts against the credit limit.
        "offer_expires_at": app.decision.offer_expires_at if app.decision else None,
        "offered_minor": Int64(app.decision.offered_amount.minor_units)
        if app.decision and app.decision.offered_amount
        else None,
    }


def application_of(doc: Document) -> Application:
    """The application from its stored document."""
    currency = doc["currency"]
    return Application(
        id=doc["_id"],
        party_id=doc["party_id"],
        product_id=doc["product_id"],
        amount=_money(doc["amount_minor"], currency),
        term_months=doc["term_months"],
        purpose=doc["purpose"],
        device_id=doc["device_id"],
        source_address=doc["source_address"],
        submitted_at=doc["submitted_at"],
        state=ApplicationState(doc["state"]),
        version=doc["version"],
        decision=_decision(doc.get("decision"), currency),
        decided_at=doc.get("decided_at"),
        assessment_id=doc.get("assessment_id"),
        assessment_event_id=doc.get("assessment_event_id"),
        loan_id=doc.get("loan_id"),
        accepted_at=doc.get("accepted_at"),
    )


# --- loans ---------------------------------------------------------------------------------


def installment_doc(i: InstallmentState) -> Document:
    """An installment's stored form (minor units, ISO dates)."""
    return {
        "n": i.number,
        "due": i.due_date.isoformat(),
        "p": Int64(i.principal.minor_units),
        "i": Int64(i.interest.minor_units),
        "pp": Int64(i.paid_principal.minor_units),
        "pi": Int64(i.paid_interest.minor_units),
        "pa": Int64(i.penalty_accrued.minor_units),
        "px": Int64(i.paid_penalty.minor_units),
        "pt": _iso(i.penalty_through),
        "iw": Int64(i.interest_waived.minor_units) if i.interest_waived is not None else None,
    }


def installment(doc: Document, currency: str) -> InstallmentState:
    """An installment from its stored form."""
    return InstallmentState(
        number=doc["n"],
        due_date=date.fromisoformat(doc["due"]),
        principal=_money(doc["p"], currency),
        interest=_money(doc["i"], currency),
        paid_principal=_money(doc["pp"], currency),
        paid_interest=_money(doc["pi"], currency),
        penalty_accrued=_money(doc["pa"], currency),
        paid_penalty=_money(doc["px"], currency),
        penalty_through=_date(doc.get("pt")),
        interest_waived=_money(doc["iw"], currency) if doc.get("iw") is not None else None,
    )


def loan_fields(loan: Loan) -> Document:
    """The loan's mutable fields, with the query fields derived from its schedule."""
    unpaid = [i for i in loan.installments if not i.settled]
    return {
        "state": str(loan.state),
        "version": loan.version,
        "disbursed_on": _iso(loan.disbursed_on),
        "disbursed_at": loan.disbursed_at,
        "rail_reference": loan.rail_reference,
        "failure": loan.failure,
        "installments": [installment_doc(i) for i in loan.installments],
        "bucket": str(loan.bucket),
        "settled_at": loan.settled_at,
        "repayments": dict(loan.repayments),
        "outstanding_minor": Int64(
            outstanding_principal(loan.installments).minor_units
            if loan.installments
            else loan.principal.minor_units
        ),
        "oldest_unpaid_due": unpaid[0].due_date.isoformat() if unpaid else None,
    }


def loan_of(doc: Document) -> Loan:
    """The loan from its stored document."""
    currency = doc["currency"]
    return Loan(
        id=doc["_id"],
        application_id=doc["application_id"],
        party_id=doc["party_id"],
        product_id=doc["product_id"],
        principal=_money(doc["principal_minor"], currency),
        annual_rate=Decimal(doc["annual_rate"]),
        full_rate=Decimal(doc["full_rate"]),
        penalty_rate=Decimal(doc["penalty_rate"]),
        term_months=doc["term_months"],
        method=doc["method"],
        funders=tuple(
            FunderPart(f["funder_id"], f["share_bps"], _money(f["amount_minor"], currency))
            for f in doc["funders"]
        ),
        booked_at=doc["booked_at"],
        state=LoanState(doc["state"]),
        version=doc["version"],
        disbursed_on=_date(doc.get("disbursed_on")),
        disbursed_at=doc.get("disbursed_at"),
        rail_reference=doc.get("rail_reference"),
        failure=doc.get("failure"),
        installments=tuple(installment(i, currency) for i in doc.get("installments") or []),
        bucket=Bucket(doc.get("bucket") or Bucket.CURRENT),
        settled_at=doc.get("settled_at"),
        repayments=dict(doc.get("repayments") or {}),
    )
