"""Applications, loans, the party view and revenue reports in MongoDB (``zc_loan``).

Each aggregate is one document holding its pending outbox events, written in one
version-guarded single-document update, so "state changed" and "event will be published"
are one atomic write (docs/decisions.md #4). Money is stored as Int64 minor units, rates as
decimal strings, dates as ISO strings (they sort as dates do).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from bson import Int64
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.loan.domain.colending import FunderPart
from zerocontact.loan.domain.decisions import Decision, Exposure, PartyFacts, Reason, RiskBand
from zerocontact.loan.domain.loans import Application, ApplicationState, Loan, LoanState
from zerocontact.loan.domain.products import KycLevel
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.domain.servicing import InstallmentState, outstanding_principal
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)
from zerocontact.platform.outbox import (
    OutboxEvent,
    ensure_outbox_index,
    outbox_document,
    outbox_fields,
)

APPLICATIONS = "applications"
LOANS = "loans"
PARTIES = "parties"
REVENUE_REPORTS = "revenue_reports"

INDEXES = [
    CollectionIndexes(
        APPLICATIONS,
        (
            IndexModel([("idem_key", ASCENDING)], unique=True, name="idem_key_unique"),
            IndexModel([("party_id", ASCENDING), ("state", ASCENDING)], name="party_state"),
            IndexModel([("state", ASCENDING), ("accepted_at", ASCENDING)], name="state_accepted"),
        ),
    ),
    CollectionIndexes(
        LOANS,
        (
            IndexModel([("application_id", ASCENDING)], unique=True, name="application_unique"),
            IndexModel([("party_id", ASCENDING), ("state", ASCENDING)], name="party_state"),
            IndexModel([("state", ASCENDING), ("oldest_unpaid_due", ASCENDING)], name="state_due"),
        ),
    ),
]


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


def _application_fields(app: Application) -> Document:
    return {
        "state": str(app.state),
        "version": app.version,
        "decision": _decision_doc(app.decision),
        "decided_at": app.decided_at,
        "assessment_id": app.assessment_id,
        "assessment_event_id": app.assessment_event_id,
        "loan_id": app.loan_id,
        "accepted_at": app.accepted_at,
        # For the exposure query: an open offer counts against the credit limit.
        "offer_expires_at": app.decision.offer_expires_at if app.decision else None,
        "offered_minor": Int64(app.decision.offered_amount.minor_units)
        if app.decision and app.decision.offered_amount
        else None,
    }


def _application(doc: Document) -> Application:
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


def _loan_fields(loan: Loan) -> Document:
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


def _loan(doc: Document) -> Loan:
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


class LoanRepository:
    """Loads and stores applications, loans, party facts and revenue reports."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self.applications: AsyncCollection[Document] = db[APPLICATIONS]
        self.loans: AsyncCollection[Document] = db[LOANS]
        self.parties: AsyncCollection[Document] = db[PARTIES]
        self.revenue_reports: AsyncCollection[Document] = db[REVENUE_REPORTS]

    async def create_indexes(self) -> None:
        """Start-up indexes, including the outbox index of every aggregate collection."""
        await ensure_indexes(self._db, INDEXES)
        for collection in (self.applications, self.loans, self.revenue_reports):
            await ensure_outbox_index(collection)

    # applications

    async def add_application(
        self, app: Application, *, idem_key: str, request: str, events: Sequence[OutboxEvent]
    ) -> bool:
        """Insert a new application; False if ``idem_key`` was used already."""
        doc: Document = {
            "_id": app.id,
            "party_id": app.party_id,
            "product_id": app.product_id,
            "amount_minor": Int64(app.amount.minor_units),
            "currency": app.amount.currency,
            "term_months": app.term_months,
            "purpose": app.purpose,
            "device_id": app.device_id,
            "source_address": app.source_address,
            "submitted_at": app.submitted_at,
            "idem_key": idem_key,
            "request": request,
            "submission_event_id": events[0].event.id if events else None,
            **_application_fields(app),
            **outbox_document(events, version=app.version),
        }
        try:
            await self.applications.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def application(self, application_id: str) -> Application | None:
        """The application, or None."""
        doc = await self.applications.find_one({"_id": application_id})
        return _application(doc) if doc else None

    async def application_by_key(self, idem_key: str) -> tuple[Application, str] | None:
        """The application created under ``idem_key`` and that request's fingerprint."""
        doc = await self.applications.find_one({"idem_key": idem_key})
        return (_application(doc), doc["request"]) if doc else None

    async def save_application(
        self, app: Application, *, events: Sequence[OutboxEvent], extra: Document | None = None
    ) -> None:
        """Store ``app`` if nobody wrote since version ``app.version - 1`` was read."""
        result = await self.applications.update_one(
            {"_id": app.id, "version": app.version - 1},
            {
                "$set": {
                    **_application_fields(app),
                    **(extra or {}),
                    **outbox_fields(events, version=app.version),
                }
            },
        )
        if result.matched_count != 1:
            raise ConcurrentUpdate(app.id)

    async def accepted_without_loan(
        self, older_than: datetime, *, window: timedelta
    ) -> list[Application]:
        """Applications accepted in ``window`` before ``older_than`` whose loan document a
        crash did not write (reads only: the hot path writes no marker for the sweep)."""
        cursor = self.applications.find(
            {
                "state": str(ApplicationState.ACCEPTED),
                "accepted_at": {"$lt": older_than, "$gte": older_than - window},
            }
        )
        found = []
        async for doc in cursor:
            if await self.loans.find_one({"application_id": doc["_id"]}, {"_id": 1}) is None:
                found.append(_application(doc))
        return found

    # loans

    async def add_loan(self, loan: Loan) -> Loan:
        """Insert a new loan; the application's existing loan if one was booked already."""
        doc: Document = {
            "_id": loan.id,
            "application_id": loan.application_id,
            "party_id": loan.party_id,
            "product_id": loan.product_id,
            "principal_minor": Int64(loan.principal.minor_units),
            "currency": loan.principal.currency,
            "annual_rate": str(loan.annual_rate),
            "full_rate": str(loan.full_rate),
            "penalty_rate": str(loan.penalty_rate),
            "term_months": loan.term_months,
            "method": loan.method,
            "funders": [
                {
                    "funder_id": f.funder_id,
                    "share_bps": f.share_bps,
                    "amount_minor": Int64(f.amount.minor_units),
                }
                for f in loan.funders
            ],
            "booked_at": loan.booked_at,
            "pending_repayment": None,
            **_loan_fields(loan),
            **outbox_document([], version=loan.version),
        }
        try:
            await self.loans.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.loans.find_one({"application_id": loan.application_id})
            assert existing is not None
            return _loan(existing)
        return loan

    async def loan(self, loan_id: str) -> Loan | None:
        """The loan, or None."""
        doc = await self.loans.find_one({"_id": loan_id})
        return _loan(doc) if doc else None

    async def loan_doc(self, loan_id: str) -> Document | None:
        """The loan's raw document (for the pending-repayment intent)."""
        return await self.loans.find_one({"_id": loan_id})

    async def save_loan(
        self, loan: Loan, *, events: Sequence[OutboxEvent], extra: Document | None = None
    ) -> None:
        """Store ``loan`` if nobody wrote since version ``loan.version - 1`` was read."""
        result = await self.loans.update_one(
            {"_id": loan.id, "version": loan.version - 1},
            {
                "$set": {
                    **_loan_fields(loan),
                    **(extra or {}),
                    **outbox_fields(events, version=loan.version),
                }
            },
        )
        if result.matched_count != 1:
            raise ConcurrentUpdate(loan.id)

    async def loans_in_state(self, state: LoanState, *, older_than: datetime) -> list[str]:
        """Ids of loans in ``state`` booked before ``older_than`` (recovery sweep)."""
        cursor = self.loans.find(
            {"state": str(state), "booked_at": {"$lt": older_than}}, {"_id": 1}
        )
        return [doc["_id"] async for doc in cursor]

    async def loans_with_pending_repayment(self) -> list[str]:
        """Ids of loans whose repayment a crash left half done."""
        cursor = self.loans.find({"pending_repayment": {"$ne": None}}, {"_id": 1})
        return [doc["_id"] async for doc in cursor]

    async def loans_past_due(self, as_of: date) -> list[str]:
        """Ids of disbursed loans with an installment due before ``as_of`` still unpaid."""
        cursor = self.loans.find(
            {"state": str(LoanState.DISBURSED), "oldest_unpaid_due": {"$lt": as_of.isoformat()}},
            {"_id": 1},
        )
        return [doc["_id"] async for doc in cursor]

    async def note_application(self, party_id: str, application_id: str) -> None:
        """List ``application_id`` on the party's document, before the application exists.

        ``exposure`` reads a party's applications and loans through this list by `_id`, as
        FerretDB 1.24 decodes the whole collection for a query on ``party_id``. Listed first,
        so a crash in between leaves a listed id with no application (skipped), never an
        application missing from its party's exposure.
        """
        await self.parties.update_one(
            {"_id": party_id}, {"$set": {f"applications.{application_id}": True}}
        )

    async def exposure(
        self, party_id: str, currency: str, *, now: datetime, deciding: str | None = None
    ) -> Exposure:
        """Principal outstanding plus open offers, and how many loans are past due.

        ``deciding``: the application being decided (awaiting risk: no offer, no loan), not
        read."""
        outstanding, overdue = 0, 0
        party = await self.parties.find_one({"_id": party_id}, {"applications": 1})
        for application_id in (party or {}).get("applications") or {}:
            if application_id == deciding:
                continue
            app = await self.applications.find_one(
                {"_id": application_id},
                {
                    "state": 1,
                    "currency": 1,
                    "offer_expires_at": 1,
                    "offered_minor": 1,
                    "loan_id": 1,
                },
            )
            if app is None:
                continue
            if app["state"] == str(ApplicationState.APPROVED):
                expires = app.get("offer_expires_at")
                if app["currency"] == currency and expires is not None and expires > now:
                    outstanding += int(app.get("offered_minor") or 0)
                continue
            if not app.get("loan_id"):
                continue
            loan = await self.loans.find_one(
                {"_id": app["loan_id"]},
                {"state": 1, "currency": 1, "outstanding_minor": 1, "bucket": 1},
            )
            if loan is None or loan["state"] not in (LoanState.BOOKED, LoanState.DISBURSED):
                continue
            if loan["currency"] == currency:
                outstanding += int(loan["outstanding_minor"])
            if loan.get("bucket", str(Bucket.CURRENT)) != str(Bucket.CURRENT):
                overdue += 1
        return Exposure(Money(currency, outstanding), overdue)

    # the party view

    async def party_facts(
        self, party_id: str, *, now: datetime, alert_window: timedelta
    ) -> PartyFacts | None:
        """What identity's and the signals' events told loan about a party; None if unknown."""
        doc = await self.parties.find_one({"_id": party_id})
        if doc is None or "kind" not in doc:
            return None
        birth_year = doc.get("birth_year")
        representative = doc.get("representative_id")
        if birth_year is None and representative:
            rep = await self.parties.find_one({"_id": representative})
            birth_year = (rep or {}).get("birth_year")
        since = now - alert_window
        alerts = tuple(
            a["description"] for a in (doc.get("alerts") or {}).values() if a["raised_at"] >= since
        )
        return PartyFacts(
            party_id=party_id,
            kyc_level=KycLevel(doc.get("kyc_level") or KycLevel.NONE),
            birth_year=birth_year,
            open_alerts=alerts,
        )

    async def representative_of(self, party_id: str) -> str | None:
        """The legal representative of an enterprise party (who acts for it)."""
        doc = await self.parties.find_one({"_id": party_id}, {"representative_id": 1})
        return (doc or {}).get("representative_id")

    # revenue reports

    async def add_revenue_report(
        self, report_key: str, *, request: str, fields: Document, events: Sequence[OutboxEvent]
    ) -> tuple[bool, str]:
        """Insert a report; (False, first request's fingerprint) if the key exists."""
        try:
            await self.revenue_reports.insert_one(
                {
                    "_id": report_key,
                    "request": request,
                    **fields,
                    **outbox_document(events, version=1),
                }
            )
        except DuplicateKeyError:
            doc = await self.revenue_reports.find_one({"_id": report_key}, {"request": 1})
            assert doc is not None
            return False, str(doc["request"])
        return True, request
