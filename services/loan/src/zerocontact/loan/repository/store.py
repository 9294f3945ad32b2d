"""Applications, loans, the party view and revenue reports in MongoDB (``zc_loan``).

Each aggregate is one document holding its pending outbox events, written in one
version-guarded single-document update, so "state changed" and "event will be published"
are one atomic write (docs/architecture.md, decision 4). How each aggregate is stored:
:mod:`zerocontact.loan.repository.documents`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta

from bson import Int64
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.loan.domain.decisions import Exposure, PartyFacts
from zerocontact.loan.domain.loans import Application, ApplicationState, Loan, LoanState
from zerocontact.loan.domain.products import KycLevel
from zerocontact.loan.domain.schedule import Bucket
from zerocontact.loan.repository.documents import (
    application_fields,
    application_of,
    loan_fields,
    loan_of,
)
from zerocontact.platform.money import Money
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)
from zerocontact.platform.outbox import (
    OutboxEvent,
    PendingEvents,
    ensure_outbox_index,
    outbox_document,
    outbox_fields,
    pending_events,
    write_aggregate,
)

APPLICATIONS = "applications"
LOANS = "loans"
PARTIES = "parties"
REVENUE_REPORTS = "revenue_reports"
# True exactly while ``pending_repayment`` holds an intent: written in the same update, so the
# recovery sweep finds half-applied repayments by an indexed equality. ``$ne: null`` on the
# intent itself is a scan of every loan on the embedded FerretDB (decisions 3, 27 and 30).
REPAYMENT_PENDING = "repayment_pending"

INDEXES = [
    CollectionIndexes(
        APPLICATIONS,
        (
            IndexModel([("idem_key", ASCENDING)], unique=True, name="idem_key_unique"),
            IndexModel([("party_id", ASCENDING), ("state", ASCENDING)], name="party_state"),
            IndexModel([("state", ASCENDING), ("accepted_at", ASCENDING)], name="state_accepted"),
            IndexModel([("loan_unconfirmed", ASCENDING)], name="loan_unconfirmed"),
        ),
    ),
    CollectionIndexes(
        LOANS,
        (
            IndexModel([("application_id", ASCENDING)], unique=True, name="application_unique"),
            IndexModel([("party_id", ASCENDING), ("state", ASCENDING)], name="party_state"),
            IndexModel([("state", ASCENDING), ("oldest_unpaid_due", ASCENDING)], name="state_due"),
            IndexModel([(REPAYMENT_PENDING, ASCENDING)], name="repayment_pending"),
        ),
    ),
]


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
        # Loans stored before the flag existed: flag an intent they still hold (once, then
        # nothing matches; the guard on the flag keeps a concurrent clear from being undone).
        await self.loans.update_many(
            {"pending_repayment": {"$ne": None}, REPAYMENT_PENDING: {"$ne": True}},
            {"$set": {REPAYMENT_PENDING: True}},
        )

    # applications

    async def add_application(
        self,
        app: Application,
        *,
        idem_key: str,
        request: str,
        events: Sequence[OutboxEvent],
        traceparent: str | None = None,
    ) -> PendingEvents | None:
        """Insert a new application and return its pending ``events`` (for the relay's nudge);
        None if ``idem_key`` was used already. ``traceparent``: the submission's trace
        context, which the acceptance and payout continue."""
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
            "traceparent": traceparent,
            **application_fields(app),
            **outbox_document(events, version=app.version),
        }
        try:
            await self.applications.insert_one(doc)
        except DuplicateKeyError:
            return None
        return pending_events(doc)

    async def application(self, application_id: str) -> Application | None:
        """The application, or None."""
        doc = await self.applications.find_one({"_id": application_id})
        return application_of(doc) if doc else None

    async def application_with_trace(
        self, application_id: str
    ) -> tuple[Application, str | None] | None:
        """The application and the trace context of its submission, or None (one read)."""
        doc = await self.applications.find_one({"_id": application_id})
        return (application_of(doc), doc.get("traceparent")) if doc else None

    async def application_by_key(self, idem_key: str) -> tuple[Application, str] | None:
        """The application created under ``idem_key`` and that request's fingerprint."""
        doc = await self.applications.find_one({"idem_key": idem_key})
        return (application_of(doc), doc["request"]) if doc else None

    async def save_application(
        self, app: Application, *, events: Sequence[OutboxEvent], extra: Document | None = None
    ) -> PendingEvents:
        """Store ``app`` if nobody wrote since version ``app.version - 1`` was read; returns
        what the application holds pending after the write (for the relay's nudge)."""
        return await write_aggregate(
            self.applications,
            {"_id": app.id, "version": app.version - 1},
            {
                "$set": {
                    **application_fields(app),
                    **(extra or {}),
                    **outbox_fields(events, version=app.version),
                }
            },
        )

    async def accepted_without_loan(
        self, older_than: datetime
    ) -> list[tuple[Application, str | None]]:
        """Applications accepted before ``older_than`` whose loan document a crash did not
        write, with the trace context of their submission.

        Reads only the applications whose loan the sweep has not yet confirmed: the
        acceptance flags them (``loan_unconfirmed``, in the same write), and this read clears
        the flag of each whose loan exists. Each accepted application is thus looked at once
        after ``older_than`` passes it, so the sweep costs what was accepted since its last
        run, not every application accepted so far (it read all of them on every run)."""
        # Read to the end before the per-application reads: a cursor left open across them
        # (minutes under load) dies with CursorNotFound when FerretDB restarts meanwhile.
        docs = await self.applications.find(
            {"loan_unconfirmed": True, "accepted_at": {"$lt": older_than}}
        ).to_list(None)
        found = []
        for doc in docs:
            app = application_of(doc)
            # By the loan's `_id` (the application's loan id, book_loan): FerretDB 1.24 pushes
            # only an `_id` equality down, so a read by application_id decoded every loan.
            if (
                app.loan_id is None
                or await self.loans.find_one({"_id": app.loan_id}, {"_id": 1}) is None
            ):
                found.append((app, doc.get("traceparent")))
            else:
                await self.applications.update_one(
                    {"_id": app.id, "loan_unconfirmed": True},
                    {"$set": {"loan_unconfirmed": False}},
                )
        return found

    # loans

    async def add_loan(self, loan: Loan, *, traceparent: str | None = None) -> Loan:
        """Insert a new loan; the application's existing loan if one was booked already.
        ``traceparent``: the booking's trace context, which a resumed payout continues."""
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
            REPAYMENT_PENDING: False,
            "traceparent": traceparent,
            **loan_fields(loan),
            **outbox_document([], version=loan.version),
        }
        try:
            await self.loans.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.loans.find_one({"application_id": loan.application_id})
            assert existing is not None
            return loan_of(existing)
        return loan

    async def loan(self, loan_id: str) -> Loan | None:
        """The loan, or None."""
        doc = await self.loans.find_one({"_id": loan_id})
        return loan_of(doc) if doc else None

    async def loan_with_doc(self, loan_id: str) -> tuple[Loan, Document] | None:
        """The loan and its raw document (the pending-repayment intent rides in it), from one
        read, so both are the same version."""
        doc = await self.loans.find_one({"_id": loan_id})
        return (loan_of(doc), doc) if doc else None

    async def save_loan(
        self, loan: Loan, *, events: Sequence[OutboxEvent], extra: Document | None = None
    ) -> PendingEvents:
        """Store ``loan`` if nobody wrote since version ``loan.version - 1`` was read; returns
        what the loan holds pending after the write (for the relay's nudge). A
        ``pending_repayment`` in ``extra`` sets or clears the flag the recovery sweep reads in
        the same write."""
        fields = dict(extra or {})
        if "pending_repayment" in fields:
            fields[REPAYMENT_PENDING] = fields["pending_repayment"] is not None
        return await write_aggregate(
            self.loans,
            {"_id": loan.id, "version": loan.version - 1},
            {
                "$set": {
                    **loan_fields(loan),
                    **fields,
                    **outbox_fields(events, version=loan.version),
                }
            },
        )

    async def loans_in_state(
        self, state: LoanState, *, older_than: datetime
    ) -> list[tuple[str, str | None]]:
        """Ids of loans in ``state`` booked before ``older_than`` (recovery sweep), with the
        trace context of their booking."""
        cursor = self.loans.find(
            {"state": str(state), "booked_at": {"$lt": older_than}}, {"_id": 1, "traceparent": 1}
        )
        return [(doc["_id"], doc.get("traceparent")) async for doc in cursor]

    async def loans_with_pending_repayment(self) -> list[str]:
        """Ids of loans whose repayment a crash left half done."""
        cursor = self.loans.find({REPAYMENT_PENDING: True}, {"_id": 1})
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
        self,
        party_id: str,
        currency: str,
        *,
        now: datetime,
        deciding: str | None = None,
        listed: Iterable[str] | None = None,
    ) -> Exposure:
        """Principal outstanding plus open offers, and how many loans are past due.

        ``deciding``: the application being decided (awaiting risk: no offer, no loan), not
        read. ``listed``: the party's applications as just read with its facts
        (:meth:`party_facts_and_applications`), so the party is not read again."""
        outstanding, overdue = 0, 0
        if listed is None:
            party = await self.parties.find_one({"_id": party_id}, {"applications": 1})
            listed = (party or {}).get("applications") or {}
        for application_id in listed:
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
        facts, _ = await self.party_facts_and_applications(
            party_id, now=now, alert_window=alert_window
        )
        return facts

    async def party_facts_and_applications(
        self, party_id: str, *, now: datetime, alert_window: timedelta
    ) -> tuple[PartyFacts | None, list[str]]:
        """The party's facts (:meth:`party_facts`) and the applications listed on it
        (:meth:`exposure`'s ``listed``), from one read of the party."""
        doc = await self.parties.find_one({"_id": party_id})
        listed = list((doc or {}).get("applications") or {})
        if doc is None or "kind" not in doc:
            return None, listed
        birth_year = doc.get("birth_year")
        representative = doc.get("representative_id")
        if birth_year is None and representative:
            rep = await self.parties.find_one({"_id": representative})
            birth_year = (rep or {}).get("birth_year")
        since = now - alert_window
        alerts = tuple(
            a["description"] for a in (doc.get("alerts") or {}).values() if a["raised_at"] >= since
        )
        facts = PartyFacts(
            party_id=party_id,
            kyc_level=KycLevel(doc.get("kyc_level") or KycLevel.NONE),
            birth_year=birth_year,
            open_alerts=alerts,
        )
        return facts, listed

    async def representative_of(self, party_id: str) -> str | None:
        """The legal representative of an enterprise party (who acts for it)."""
        doc = await self.parties.find_one({"_id": party_id}, {"representative_id": 1})
        return (doc or {}).get("representative_id")

    async def party_known(self, party_id: str) -> tuple[bool, str | None]:
        """Whether identity's events told loan of the party, and its legal representative."""
        doc = await self.parties.find_one({"_id": party_id}, {"kind": 1, "representative_id": 1})
        return (doc is not None and "kind" in doc), (doc or {}).get("representative_id")

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
