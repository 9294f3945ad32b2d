"""Marketing's MongoDB collections and the writes every room shares. Hot documents are keyed by ``_id`` (FerretDB 1.24 pushes
only ``_id`` equality down and scans for anything else, docs/architecture.md, decision 3): profiles,
preferences and contact logs by party, members by ``campaign:party``, sessions by id.
Aggregates that emit events carry their outbox in the same document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)
from zerocontact.platform.outbox import (
    OutboxEvent,
    ensure_outbox_index,
    insert_aggregate,
    update_aggregate,
)

PROFILES = "profiles"
PREFERENCES = "preferences"
CONTACT_LOG = "contact_log"
PRODUCTS = "products"
SEGMENTS = "segments"
CAMPAIGNS = "campaigns"
DELIVERIES = "deliveries"
MEMBERS = "campaign_members"
SUPPRESSIONS = "suppressions"
PAYEE_LINKS = "payee_links"
REMINDERS = "reminders"
STUDIOS = "studios"
SESSIONS = "studio_sessions"
IDEMPOTENCY = "idempotency"
LIVE = "live_signals"

OUTBOX_COLLECTIONS = (PREFERENCES, PROFILES, CAMPAIGNS, DELIVERIES, SUPPRESSIONS, SESSIONS, MEMBERS)

# Read without the outbox: what callers see of an aggregate.
WITHOUT_OUTBOX = {"_outbox": 0, "_outbox_pending": 0}

INDEXES = [
    # The scheduler's and the campaign book's reads every few seconds (`status: APPROVED`):
    # an index lookup, not a pass over every campaign (decision 30).
    CollectionIndexes(CAMPAIGNS, (IndexModel([("status", ASCENDING)], name="status"),)),
    CollectionIndexes(MEMBERS, (IndexModel([("campaign_id", ASCENDING)], name="campaign"),)),
    CollectionIndexes(REMINDERS, (IndexModel([("due_at", ASCENDING)], name="due"),)),
    CollectionIndexes(SUPPRESSIONS, (IndexModel([("party_id", ASCENDING)], name="party"),)),
]


class Store:
    """Every collection of the service, and the few writes that need care (the rooms'
    stores in this package add their reads and writes on top)."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.profiles: AsyncCollection[Document] = db[PROFILES]
        self.preferences: AsyncCollection[Document] = db[PREFERENCES]
        self.contact_log: AsyncCollection[Document] = db[CONTACT_LOG]
        self.products: AsyncCollection[Document] = db[PRODUCTS]
        self.segments: AsyncCollection[Document] = db[SEGMENTS]
        self.campaigns: AsyncCollection[Document] = db[CAMPAIGNS]
        self.deliveries: AsyncCollection[Document] = db[DELIVERIES]
        self.members: AsyncCollection[Document] = db[MEMBERS]
        self.suppressions: AsyncCollection[Document] = db[SUPPRESSIONS]
        self.payee_links: AsyncCollection[Document] = db[PAYEE_LINKS]
        self.reminders: AsyncCollection[Document] = db[REMINDERS]
        self.studios: AsyncCollection[Document] = db[STUDIOS]
        self.sessions: AsyncCollection[Document] = db[SESSIONS]
        self.idempotency: AsyncCollection[Document] = db[IDEMPOTENCY]
        self.live: AsyncCollection[Document] = db[LIVE]

    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        """Collections the outbox relay publishes from."""
        return [self.db[name] for name in OUTBOX_COLLECTIONS]

    async def create_indexes(self) -> None:
        """Secondary indexes (used by sweeps and reports, never by the trigger path)."""
        await ensure_indexes(self.db, INDEXES)
        for collection in self.outbox_collections():
            await ensure_outbox_index(collection)

    async def upsert_with_events(
        self,
        collection: AsyncCollection[Document],
        doc_id: Any,
        *,
        set_fields: Document,
        events: Sequence[OutboxEvent],
    ) -> None:
        """Create or replace fields of a document, versioned, with its events (retries races)."""
        for _ in range(10):
            current = await collection.find_one({"_id": doc_id}, {"version": 1})
            if current is None:
                if await insert_aggregate(collection, {"_id": doc_id, **set_fields}, events):
                    return
                continue
            try:
                await update_aggregate(
                    collection,
                    doc_id,
                    version=current["version"],
                    changes=set_fields,
                    events=events,
                )
                return
            except ConcurrentUpdate:
                continue
        raise ConcurrentUpdate(str(doc_id))

    async def claim_contact(
        self, party_id: str, channel: str, day: str, *, expected: Document | None
    ) -> bool:
        """Count one contact on ``channel`` today if the log is unchanged since it was read
        (compare-and-set on its version, so two triggers cannot both take the last slot)."""
        field = f"sent.{channel}.{day}"
        if expected is None:
            try:
                await self.contact_log.insert_one(
                    {"_id": party_id, "version": 1, "sent": {channel: {day: 1}}}
                )
            except DuplicateKeyError:
                return False
            return True
        result = await self.contact_log.update_one(
            {"_id": party_id, "version": expected["version"]},
            {"$inc": {field: 1, "version": 1}},
        )
        return result.matched_count == 1

    async def reserve_budget(self, campaign_id: str, cost_minor: int, budget_minor: int) -> bool:
        """Add ``cost_minor`` to the campaign's ``spent_minor`` unless that would pass its
        budget: one conditional ``$inc`` (atomic per document), so concurrent offers of one
        campaign cannot overspend. Campaigns stored before budgets were enforced have no
        ``spent_minor`` yet and start from zero."""
        if cost_minor <= 0:
            return True
        if cost_minor > budget_minor:
            return False
        result = await self.campaigns.update_one(
            {
                "_id": campaign_id,
                "$or": [
                    {"spent_minor": {"$lte": budget_minor - cost_minor}},
                    {"spent_minor": {"$exists": False}},
                ],
            },
            {"$inc": {"spent_minor": cost_minor}},
        )
        return result.modified_count == 1

    async def release_budget(self, campaign_id: str, cost_minor: int) -> None:
        """Give back a reservation whose offer was not sent after all."""
        if cost_minor > 0:
            await self.campaigns.update_one(
                {"_id": campaign_id}, {"$inc": {"spent_minor": -cost_minor}}
            )

    async def find_profile_after(self, doc_id: str, update: Document) -> Document | None:
        """Apply ``update`` and return the document after it (upsert)."""
        return await self.profiles.find_one_and_update(
            {"_id": doc_id}, update, upsert=True, return_document=ReturnDocument.AFTER
        )

    async def stream_profiles(self, batch_size: int) -> AsyncIterator[list[Document]]:
        """Every profile, in batches (a cursor; nothing held beyond one batch)."""
        batch: list[Document] = []
        cursor = self.profiles.find(
            {},
            {"_applied": 0, "_outbox": 0},
            batch_size=batch_size,
        )
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= batch_size:
                yield batch
                batch = []
        if batch:
            yield batch

    async def due_reminders(self, now: datetime) -> list[Document]:
        """Loan reminders due by ``now`` (a small collection; swept, not on the hot path)."""
        return [doc async for doc in self.reminders.find({"due_at": {"$lte": now}}).limit(500)]
