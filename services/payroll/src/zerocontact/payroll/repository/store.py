"""Payroll's repository: employers, the party directory, batches, gig payouts, treasury records.

Aggregates carry their outbox (``zerocontact.platform.outbox``): a state change and its events
are one write. Handlers get and give typed aggregates (``payroll.domain.aggregates``); the
documents are shaped in ``documents.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from bson import Int64
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.payroll.domain.aggregates import (
    GIG_OPEN,
    Agent,
    Batch,
    Employer,
    GigPayout,
    Party,
)
from zerocontact.payroll.domain.batches import BatchState
from zerocontact.payroll.repository.documents import (
    agent_document,
    batch_document,
    batch_from_document,
    employer_document,
    employer_from_document,
    gig_document,
    gig_from_document,
    party_from_document,
)
from zerocontact.payroll.repository.items import ItemStore
from zerocontact.payroll.repository.layout import (
    EMPLOYERS,
    GIG_PAYOUTS,
    IDEMPOTENCY,
    INDEXES,
    PARTIES,
    TREASURY,
)
from zerocontact.platform.idempotency import apply_once
from zerocontact.platform.mongo import Document, ensure_indexes
from zerocontact.platform.outbox import (
    OutboxEvent,
    ensure_outbox_index,
    insert_aggregate,
    update_aggregate,
)


@dataclass(frozen=True)
class KeyClaim:
    """An idempotency key's claim: the request's fingerprint and the resource it names."""

    fingerprint: str
    resource_id: str
    response: Any = None


class PayrollRepository(ItemStore):
    """All of payroll's collections in one database."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        super().__init__(db)
        self.employers: AsyncCollection[Document] = db[EMPLOYERS]
        self.parties: AsyncCollection[Document] = db[PARTIES]
        self.gig_payouts: AsyncCollection[Document] = db[GIG_PAYOUTS]
        self.treasury: AsyncCollection[Document] = db[TREASURY]
        self.idempotency: AsyncCollection[Document] = db[IDEMPOTENCY]

    @property
    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        """Collections whose documents carry outbox events."""
        return [self.employers, self.batches, self.gig_payouts, self.treasury]

    async def create_indexes(self) -> None:
        """Create indexes at start-up (idempotent)."""
        await ensure_indexes(self.db, INDEXES)
        for collection in self.outbox_collections:
            await ensure_outbox_index(collection)

    # the party directory and employers ----------------------------------------------------

    async def party(self, party_id: str) -> Party | None:
        """A party of the directory identity's events built, if payroll heard of it."""
        doc = await self.parties.find_one({"_id": party_id})
        return None if doc is None else party_from_document(doc)

    async def record_enterprise(
        self,
        enterprise_id: str,
        *,
        event_id: str,
        name: str,
        credit_code: str,
        legal_representative_id: str,
        registered_at: datetime,
    ) -> bool:
        """Project an enterprise registration (once per event); its KYB level starts at NONE."""
        return await apply_once(
            self.parties,
            doc_id=enterprise_id,
            event_id=event_id,
            update={
                "$set": {
                    "kind": "enterprise",
                    "name": name,
                    "credit_code": credit_code,
                    "legal_representative_id": legal_representative_id,
                    "registered_at": registered_at,
                },
                "$setOnInsert": {"kyc_level": "KYC_LEVEL_NONE"},
            },
        )

    async def record_kyc_level(
        self, party_id: str, *, event_id: str, level: str, changed_at: datetime, actor: str
    ) -> bool:
        """Project a party's new KYB level (once per event)."""
        return await apply_once(
            self.parties,
            doc_id=party_id,
            event_id=event_id,
            update={"$set": {"kyc_level": level, "kyc_changed_at": changed_at, "kyc_actor": actor}},
        )

    async def employer(self, employer_id: str) -> Employer | None:
        """An onboarded employer."""
        doc = await self.employers.find_one({"_id": employer_id})
        return None if doc is None else employer_from_document(doc)

    async def add_employer(self, employer: Employer, events: Sequence[OutboxEvent]) -> bool:
        """Store a new employer with its events; False when it was onboarded before."""
        return await insert_aggregate(self.employers, employer_document(employer), events)

    async def add_agent(
        self, employer: Employer, agent_id: str, agent: Agent, events: Sequence[OutboxEvent]
    ) -> None:
        """Add an agent to ``employer`` as read (``ConcurrentUpdate`` if it changed since)."""
        await update_aggregate(
            self.employers,
            employer.employer_id,
            version=employer.version,
            changes={f"agents.{agent_id}": agent_document(agent)},
            events=events,
        )

    # treasury records ----------------------------------------------------------------------

    async def add_treasury_record(
        self, record_id: str, *, employer_id: str, kind: str, events: Sequence[OutboxEvent]
    ) -> bool:
        """A treasury movement's record with its event; False when written before."""
        doc = {"_id": record_id, "employer_id": employer_id, "kind": kind, "at": datetime.now(UTC)}
        return await insert_aggregate(self.treasury, doc, events)

    # batches -------------------------------------------------------------------------------

    async def batch(self, batch_id: str) -> Batch | None:
        """A stored batch."""
        doc = await self.batches.find_one({"_id": batch_id})
        return None if doc is None else batch_from_document(doc)

    async def add_batch(
        self, batch: Batch, events: Sequence[OutboxEvent], *, traceparent: str | None = None
    ) -> bool:
        """Store a new (refused or submitted) batch with its events; False if it exists.
        ``traceparent``: the submission's trace context, which the batch's run continues."""
        doc = batch_document(batch)
        if traceparent is not None:
            doc["traceparent"] = traceparent
        return await insert_aggregate(self.batches, doc, events)

    async def batch_with_trace(self, batch_id: str) -> tuple[Batch, str | None] | None:
        """A stored batch and the trace context of its submission (one read)."""
        doc = await self.batches.find_one({"_id": batch_id})
        return None if doc is None else (batch_from_document(doc), doc.get("traceparent"))

    async def batches_in_state(self, state: BatchState) -> list[Batch]:
        """Every batch in ``state``."""
        return [batch_from_document(doc) async for doc in self.batches.find({"state": str(state)})]

    async def batch_ids_in_state(self, state: BatchState) -> list[str]:
        """The ids of every batch in ``state`` (nothing else is read)."""
        return [doc["_id"] async for doc in self.batches.find({"state": str(state)}, {"_id": 1})]

    async def oldest_executing_start(self) -> datetime | None:
        """When the oldest batch still EXECUTING started (the ``state`` index; one document)."""
        doc = await self.batches.find_one(
            {"state": str(BatchState.EXECUTING)}, {"started_at": 1}, sort=[("started_at", 1)]
        )
        return None if doc is None else doc.get("started_at")

    async def submitted_batches(self, employer_id: str) -> list[Batch]:
        """The employer's batches waiting for approval."""
        query = {"employer_id": employer_id, "state": str(BatchState.SUBMITTED)}
        return [batch_from_document(doc) async for doc in self.batches.find(query)]

    async def approve_batch(
        self,
        batch: Batch,
        *,
        approved_by: str,
        approved_aal: str,
        approved_at: datetime,
        events: Sequence[OutboxEvent],
    ) -> None:
        """SUBMITTED → APPROVED as read (``ConcurrentUpdate`` if it changed since)."""
        await update_aggregate(
            self.batches,
            batch.batch_id,
            version=batch.version,
            changes={
                "state": str(BatchState.APPROVED),
                "approved_by": approved_by,
                "approved_aal": approved_aal,
                "approved_at": approved_at,
            },
            events=events,
        )

    async def start_executing(self, batch_id: str) -> None:
        """APPROVED → EXECUTING (no-op for a batch that moved on)."""
        await self.batches.update_one(
            {"_id": batch_id, "state": str(BatchState.APPROVED)},
            {"$set": {"state": str(BatchState.EXECUTING), "started_at": datetime.now(UTC)}},
        )

    async def mark_chunk_done(self, batch_id: str, chunk: int) -> None:
        """Every item of ``chunk`` is final, settled and published."""
        await self.batches.update_one({"_id": batch_id}, {"$set": {f"chunks_done.{chunk}": True}})

    async def complete_batch(
        self,
        batch: Batch,
        *,
        status: str,
        paid_items: int,
        failed_items: int,
        paid_minor: int,
        released_minor: int,
        completed_at: datetime,
        events: Sequence[OutboxEvent],
    ) -> None:
        """EXECUTING → COMPLETED as read (``ConcurrentUpdate`` if it changed since)."""
        await update_aggregate(
            self.batches,
            batch.batch_id,
            version=batch.version,
            changes={
                "state": str(BatchState.COMPLETED),
                "status": status,
                "paid_items": paid_items,
                "failed_items": failed_items,
                "paid_minor": Int64(paid_minor),
                "released_minor": Int64(released_minor),
                "completed_at": completed_at,
            },
            events=events,
        )

    async def claim_batch(self, batch_id: str, owner: str, lease_s: float) -> bool:
        """Take or renew the lease on running ``batch_id``; False while another owner holds it."""
        now = datetime.now(UTC)
        result = await self.batches.update_one(
            {
                "_id": batch_id,
                "$or": [
                    {"lease_owner": owner},
                    {"lease_until": None},
                    {"lease_until": {"$lt": now}},
                ],
            },
            {"$set": {"lease_owner": owner, "lease_until": now + timedelta(seconds=lease_s)}},
        )
        return result.matched_count == 1

    async def release_batch(self, batch_id: str, owner: str) -> None:
        """Give the lease up (a stopping process), so another may resume at once."""
        await self.batches.update_one(
            {"_id": batch_id, "lease_owner": owner}, {"$set": {"lease_until": None}}
        )

    # gig payouts ---------------------------------------------------------------------------

    async def gig_payout(self, payout_id: str) -> GigPayout | None:
        """A stored gig payout."""
        doc = await self.gig_payouts.find_one({"_id": payout_id})
        return None if doc is None else gig_from_document(doc)

    async def add_gig_payout(self, payout: GigPayout) -> bool:
        """Store a new gig payout (no event yet); False if it exists."""
        return await insert_aggregate(self.gig_payouts, gig_document(payout), [])

    async def set_gig_state(
        self, payout_id: str, state: str, *, attempts: int | None = None
    ) -> None:
        """Record a step of the payout (SENT with its attempt count, REFUSED)."""
        changes: Document = {"state": state}
        if attempts is not None:
            changes["attempts"] = attempts
        await self.gig_payouts.update_one({"_id": payout_id}, {"$set": changes})

    async def decide_gig(
        self,
        payout: GigPayout,
        *,
        state: str,
        decided_at: datetime,
        events: Sequence[OutboxEvent],
        rail_reference: str | None = None,
        reason_code: str | None = None,
    ) -> None:
        """PAID (with the rail's reference) or FAILED (with the reason) as read."""
        changes: Document = {"state": state}
        if rail_reference is not None:
            changes["rail_reference"] = rail_reference
        if reason_code is not None:
            changes["reason_code"] = reason_code
        await update_aggregate(
            self.gig_payouts,
            payout.payout_id,
            version=payout.version,
            changes={**changes, "decided_at": decided_at},
            events=events,
        )

    async def open_gig_payout_ids(self) -> list[str]:
        """Gig payouts not decided yet (PENDING or SENT)."""
        query = {"state": {"$in": list(GIG_OPEN)}}
        return [doc["_id"] async for doc in self.gig_payouts.find(query)]

    # idempotency keys ---------------------------------------------------------------------

    async def claim_key(self, key_id: str, fingerprint: str, resource_id: str) -> KeyClaim:
        """Claim an idempotency key, or return the existing claim (to compare fingerprints)."""
        doc: Document = {
            "_id": key_id,
            "fingerprint": fingerprint,
            "resource_id": resource_id,
            "created_at": datetime.now(UTC),
            "response": None,
        }
        try:
            await self.idempotency.insert_one(doc)
        except DuplicateKeyError:
            existing = await self.idempotency.find_one({"_id": key_id})
            if existing is None:
                raise
            doc = existing
        return KeyClaim(doc["fingerprint"], str(doc["resource_id"]), doc.get("response"))

    async def store_response(self, key_id: str, response: Any) -> None:
        """Remember the first response for a key."""
        await self.idempotency.update_one({"_id": key_id}, {"$set": {"response": response}})
