"""A batch's items, chunk instructions, attempts and outcomes: the hot path of a payroll run.

Items are written in bulk (``insert_many(ordered=False)``); an item's final outcome is an
insert into ``item_outcomes`` keyed by batch and EndToEndId, so the first decision wins and a
re-driven item can never be decided twice.

The hot path reads by ``_id`` only: FerretDB 1.24's SQLite backend pushes down nothing but a
filter ``{_id: <string>}`` (``internal/backends/sqlite/collection.go``); any other filter,
indexed or not, decodes every document of the collection. So the payment instructions of a
chunk are also kept in one ``batch_chunks`` document (``<batch>:c<chunk>``) read by ``_id``,
and the runner keeps the outcomes it writes instead of reading them back. The runner handles
items and outcomes as documents: thousands per batch, and it only passes them on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import BulkWriteError

from zerocontact.payroll import metrics
from zerocontact.payroll.domain.aggregates import Batch, BatchItem, ItemLine, PayslipLine
from zerocontact.payroll.domain.batches import BatchState
from zerocontact.payroll.repository.documents import item_document, item_line
from zerocontact.payroll.repository.layout import (
    ATTEMPTS,
    BATCHES,
    CHUNK_ITEM_FIELDS,
    CHUNKS,
    END_TO_END_IDS,
    ITEMS,
    OUTCOMES,
    chunk_id,
)
from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import Document


def _only_duplicates(exc: BulkWriteError) -> list[dict[str, Any]]:
    """The write errors of a bulk insert if every one is a duplicate key; re-raise otherwise."""
    errors: list[dict[str, Any]] = exc.details.get("writeErrors", [])
    if any(e.get("code") != 11000 for e in errors):
        raise exc
    return errors


class ItemStore:
    """Items, chunk documents, attempts, outcomes and EndToEndId reservations."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.db = db
        self.batches: AsyncCollection[Document] = db[BATCHES]
        self.items: AsyncCollection[Document] = db[ITEMS]
        self.outcomes: AsyncCollection[Document] = db[OUTCOMES]
        self.attempts: AsyncCollection[Document] = db[ATTEMPTS]
        self.chunks: AsyncCollection[Document] = db[CHUNKS]
        self.end_to_end_ids: AsyncCollection[Document] = db[END_TO_END_IDS]

    async def add_items(self, batch_id: str, items: Sequence[BatchItem]) -> None:
        """Store a batch's items, then one document per chunk with their instructions.

        Items already there (a retried submission) are left as they are.
        """
        docs = [item_document(i) for i in items]
        await self.insert_items(docs)
        await self.insert_chunks(batch_id, docs)

    async def insert_items(self, docs: Sequence[Document]) -> None:
        """Bulk insert; items already there (a retried submission) are left as they are."""
        if not docs:
            return
        try:
            await self.items.insert_many(list(docs), ordered=False)
        except BulkWriteError as exc:
            _only_duplicates(exc)

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
            duplicates = {int(e["index"]) for e in _only_duplicates(exc)}
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
            _only_duplicates(exc)

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
        metrics.items_decided(d for d, s in zip(docs, stored, strict=True) if s is d)  # inserted
        return stored

    async def batch_outcomes(self, batch_id: str) -> dict[int, list[Document]]:
        """Every final outcome of a batch per chunk (one scan: for recovery)."""
        by_chunk: dict[int, list[Document]] = {}
        async for doc in self.outcomes.find({"batch_id": batch_id}):
            by_chunk.setdefault(int(doc["chunk"]), []).append(doc)
        return by_chunk

    async def item_counts(self, batch: Batch) -> dict[str, int]:
        """Items per state: PAID and FAILED from the outcomes, the rest still open (PENDING)."""
        if batch.state == BatchState.REFUSED:
            return {}
        paid, failed, _ = await self.outcome_totals(batch.batch_id)
        counts = {"PAID": paid, "FAILED": failed, "PENDING": batch.item_count - paid - failed}
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

    async def item_lines(self, batch_id: str, *, after_seq: int = 0) -> AsyncIterator[ItemLine]:
        """The batch's items in order, each with its outcome's state, attempts and reason."""
        outcomes = await self.outcomes_by_item(batch_id)
        async for item in self.items.find({"batch_id": batch_id, "seq": {"$gt": after_seq}}).sort(
            "seq", 1
        ):
            yield item_line(item, outcomes.get(item["_id"]))

    async def payslips(self, customer_id: str, *, limit: int = 100) -> list[PayslipLine]:
        """The payee's payslips (items naming ``customer_id``), newest first."""
        slips = []
        async for item in (
            self.items.find({"customer_id": customer_id}).sort("_id", -1).limit(limit)
        ):
            batch = await self.batches.find_one({"_id": item["batch_id"]})
            slip: Document = item.get("payslip") or {}
            outcome = await self.outcomes.find_one(
                {"_id": f"{item['batch_id']}:{item['end_to_end_id']}"}
            )
            slips.append(
                PayslipLine(
                    batch_id=item["batch_id"],
                    employer_id=batch["employer_id"] if batch else "",
                    end_to_end_id=item["end_to_end_id"],
                    currency=batch["currency"] if batch else "CNY",
                    gross_minor=int(slip.get("gross_minor") or item["amount_minor"]),
                    deductions_minor={k: int(v) for k, v in (slip.get("deductions") or {}).items()},
                    net_minor=int(item["amount_minor"]),
                    card_masked=item["card_masked"],
                    state=outcome["state"] if outcome else "PENDING",
                )
            )
        return slips
