"""Payroll's MongoDB collections: employers, parties, batches, items, outcomes, payouts.

Aggregates carry their outbox (``zerocontact.platform.outbox``). Items are written in bulk
(``insert_many(ordered=False)``); an item's final outcome is an insert into ``item_outcomes``
keyed by batch and EndToEndId, so the first decision wins and a re-driven item can never be
decided twice. The events of a chunk of items travel in one outbox document per chunk.

The hot path reads by ``_id`` only: FerretDB 1.24's SQLite backend pushes down nothing but a
filter ``{_id: <string>}`` (``internal/backends/sqlite/collection.go``); any other filter,
indexed or not, decodes every document of the collection. So the payment instructions of a
chunk are also kept in one ``batch_chunks`` document (``<batch>:c<chunk>``) read by ``_id``,
and the runner keeps the outcomes it writes instead of reading them back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError, DuplicateKeyError

from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)
from zerocontact.platform.outbox import ensure_outbox_index

EMPLOYERS = "employers"
PARTIES = "parties"
BATCHES = "batches"
ITEMS = "batch_items"
OUTCOMES = "item_outcomes"
GIG_PAYOUTS = "gig_payouts"
TREASURY = "treasury"  # sweep/redeem/top-up records with their events
IDEMPOTENCY = "idempotency_keys"
ATTEMPTS = "item_attempts"
CHUNKS = "batch_chunks"  # the payment instructions of one chunk, read by _id
# One document per EndToEndId an employer ever submitted (`<employer>:<id>`): the rail pays an
# EndToEndId once, so a batch reusing one would be reported paid without being paid.
END_TO_END_IDS = "end_to_end_ids"

# the fields of an item the runner needs to pay it (kept in its chunk document)
CHUNK_ITEM_FIELDS = (
    "_id",
    "chunk",
    "end_to_end_id",
    "payee_name",
    "card_enc",
    "card_masked",
    "bank",
    "amount_minor",
    "customer_id",  # the payee's party at identity, named in SalaryPaid when given
)

INDEXES = [
    CollectionIndexes(
        ITEMS,
        (
            IndexModel([("batch_id", ASCENDING), ("chunk", ASCENDING)], name="batch_chunk"),
            IndexModel([("customer_id", ASCENDING)], name="customer"),
        ),
    ),
    CollectionIndexes(
        ATTEMPTS, (IndexModel([("batch_id", ASCENDING), ("chunk", ASCENDING)], name="batch_chunk"),)
    ),
    CollectionIndexes(
        OUTCOMES, (IndexModel([("batch_id", ASCENDING), ("chunk", ASCENDING)], name="batch_chunk"),)
    ),
    CollectionIndexes(
        BATCHES,
        (
            IndexModel([("state", ASCENDING)], name="state"),
            IndexModel([("employer_id", ASCENDING)], name="employer"),
        ),
    ),
    CollectionIndexes(GIG_PAYOUTS, (IndexModel([("state", ASCENDING)], name="state"),)),
]


def chunk_id(batch_id: str, chunk: int) -> str:
    """The ``_id`` of a chunk's documents (instructions and events)."""
    return f"{batch_id}:c{chunk:05d}"


class PayrollRepository:
    """All of payroll's collections in one database."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.employers: AsyncCollection[Document] = db[EMPLOYERS]
        self.parties: AsyncCollection[Document] = db[PARTIES]
        self.batches: AsyncCollection[Document] = db[BATCHES]
        self.items: AsyncCollection[Document] = db[ITEMS]
        self.outcomes: AsyncCollection[Document] = db[OUTCOMES]
        self.gig_payouts: AsyncCollection[Document] = db[GIG_PAYOUTS]
        self.treasury: AsyncCollection[Document] = db[TREASURY]
        self.idempotency: AsyncCollection[Document] = db[IDEMPOTENCY]
        self.attempts: AsyncCollection[Document] = db[ATTEMPTS]
        self.chunks: AsyncCollection[Document] = db[CHUNKS]
        self.end_to_end_ids: AsyncCollection[Document] = db[END_TO_END_IDS]

    @property
    def outbox_collections(self) -> list[AsyncCollection[Document]]:
        """Collections whose documents carry outbox events."""
        return [self.employers, self.batches, self.gig_payouts, self.treasury]

    async def create_indexes(self) -> None:
        """Create indexes at start-up (idempotent)."""
        await ensure_indexes(self.db, INDEXES)
        for collection in self.outbox_collections:
            await ensure_outbox_index(collection)

    # items --------------------------------------------------------------------------------

    async def insert_items(self, docs: Sequence[Document]) -> None:
        """Bulk insert; items already there (a retried submission) are left as they are."""
        if not docs:
            return
        try:
            await self.items.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    async def claim_end_to_end_ids(
        self, employer_id: str, batch_id: str, end_to_end_ids: Sequence[str]
    ) -> list[str]:
        """Reserve each EndToEndId for ``batch_id``; return those an earlier batch used.

        When some are taken, the ones this call reserved are released again, so a corrected
        batch can use them. A retried submission of the same batch finds its own reservations.
        """
        docs = [{"_id": f"{employer_id}:{e}", "batch_id": batch_id} for e in end_to_end_ids]
        if not docs:
            return []
        try:
            await self.end_to_end_ids.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            duplicates = {int(e["index"]) for e in errors}
        else:
            return []
        taken = []
        for index in sorted(duplicates):  # by _id: FerretDB scans for anything else
            owner = await self.end_to_end_ids.find_one({"_id": docs[index]["_id"]})
            if owner is not None and owner["batch_id"] != batch_id:
                taken.append(end_to_end_ids[index])
        if taken:
            for index, doc in enumerate(docs):
                if index not in duplicates:
                    await self.end_to_end_ids.delete_one({"_id": doc["_id"], "batch_id": batch_id})
        return taken

    async def insert_chunks(self, batch_id: str, item_docs: Sequence[Document]) -> None:
        """One document per chunk with its items' payment instructions (a retry keeps them)."""
        by_chunk: dict[int, list[Document]] = {}
        for doc in item_docs:
            by_chunk.setdefault(int(doc["chunk"]), []).append(
                {k: doc[k] for k in CHUNK_ITEM_FIELDS}
            )
        docs = [
            {"_id": chunk_id(batch_id, chunk), "batch_id": batch_id, "items": items}
            for chunk, items in sorted(by_chunk.items())
        ]
        if not docs:
            return
        try:
            await self.chunks.insert_many(docs, ordered=False)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

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

    async def chunk_items(self, batch_id: str, chunk: int) -> list[Document]:
        """The payment instructions of one chunk, by ``_id`` (no collection scan)."""
        doc = await self.chunks.find_one({"_id": chunk_id(batch_id, chunk)})
        if doc is not None:
            items: list[Document] = doc["items"]
            return items
        # a batch stored before chunk documents existed: a scan of the items
        return [doc async for doc in self.items.find({"batch_id": batch_id, "chunk": chunk})]

    async def record_attempt(
        self, batch_id: str, chunk: int, end_to_end_ids: Sequence[str]
    ) -> None:
        """Items SENT: one insert per rail request, written BEFORE the rail is called.

        Item state is never updated in place: FerretDB 1.24 takes seconds for an
        ``update_many`` over a few hundred ids and closes the connection on a ``bulk_write``
        of updates, so every state change of the hot path is an insert (attempts here,
        decisions in ``item_outcomes``) and an item's state is derived from them.
        """
        await self.attempts.insert_one(
            {
                "_id": new_id(),
                "batch_id": batch_id,
                "chunk": chunk,
                "e2e": list(end_to_end_ids),
                "sent_at": datetime.now(UTC),
            }
        )

    async def batch_attempts(self, batch_id: str) -> dict[int, Counter[str]]:
        """Rail requests made so far per EndToEndId, per chunk (one scan: for recovery)."""
        counts: dict[int, Counter[str]] = {}
        async for doc in self.attempts.find({"batch_id": batch_id}, {"e2e": 1, "chunk": 1}):
            counts.setdefault(int(doc["chunk"]), Counter()).update(doc["e2e"])
        return counts

    async def record_outcomes(self, docs: Sequence[Document]) -> list[Document]:
        """Insert final outcomes; first wins: returns the stored decision of each, in order.

        A duplicate (another runner decided the item first) is read back by ``_id``.
        """
        if not docs:
            return []
        stored = list(docs)
        try:
            await self.outcomes.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            for error in exc.details.get("writeErrors", []):
                if error.get("code") != 11000:
                    raise
                first = await self.outcomes.find_one({"_id": docs[error["index"]]["_id"]})
                if first is None:
                    raise
                stored[error["index"]] = first
        return stored

    async def batch_outcomes(self, batch_id: str) -> dict[int, list[Document]]:
        """Every final outcome of a batch per chunk (one scan: for recovery)."""
        by_chunk: dict[int, list[Document]] = {}
        async for doc in self.outcomes.find({"batch_id": batch_id}):
            by_chunk.setdefault(int(doc["chunk"]), []).append(doc)
        return by_chunk

    async def item_counts(self, batch: Document) -> dict[str, int]:
        """Items per state: PAID and FAILED from the outcomes, the rest still open (PENDING)."""
        if "item_count" not in batch or batch.get("state") == "REFUSED":
            return {}
        paid, failed, _ = await self.outcome_totals(batch["_id"])
        counts = {
            "PAID": paid,
            "FAILED": failed,
            "PENDING": int(batch["item_count"]) - paid - failed,
        }
        return {k: v for k, v in counts.items() if v}

    async def outcomes_by_item(self, batch_id: str) -> dict[str, Document]:
        """The batch's outcomes keyed by item id."""
        return {doc["item_id"]: doc async for doc in self.outcomes.find({"batch_id": batch_id})}

    async def outcome_totals(self, batch_id: str) -> tuple[int, int, int]:
        """(paid items, failed items, paid minor units) from the outcomes (the authority)."""
        paid = failed = paid_minor = 0
        async for doc in self.outcomes.find(
            {"batch_id": batch_id}, {"state": 1, "amount_minor": 1}
        ):
            if doc["state"] == "PAID":
                paid += 1
                paid_minor += int(doc["amount_minor"])
            else:
                failed += 1
        return paid, failed, paid_minor

    # idempotency keys ---------------------------------------------------------------------

    async def claim_key(self, key_id: str, fingerprint: str, resource_id: str) -> Document:
        """Claim an idempotency key, or return the existing claim (to compare fingerprints)."""
        doc = {
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
            if existing is not None:
                return existing
            raise
        return doc

    async def store_response(self, key_id: str, response: Any) -> None:
        """Remember the first response for a key."""
        await self.idempotency.update_one({"_id": key_id}, {"$set": {"response": response}})
