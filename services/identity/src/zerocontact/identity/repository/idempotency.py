"""Idempotency keys of mutating HTTP calls: the same key + request returns the first result.

A key is claimed (``pending``) before the work starts, so two concurrent calls with one key
cannot both run; the first successful response is stored encrypted (responses may hold
tokens or TOTP secrets) and replayed to retries. A refused or failed call releases its key,
so the client may retry it. Records expire after ``ttl`` and are swept (no TTL indexes on
FerretDB).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes

IDEMPOTENCY_KEYS = "idempotency_keys"
INDEXES = [
    CollectionIndexes(IDEMPOTENCY_KEYS, (IndexModel([("expires_at", ASCENDING)], name="expires"),))
]
# A claim older than this belongs to a crashed request and may be taken over.
ABANDONED_AFTER = timedelta(seconds=60)


@dataclass(frozen=True)
class StoredResponse:
    """The outcome of a claim: a replay of the first response, or a pending claim."""

    fingerprint: str
    status_code: int | None = None
    body_encrypted: str | None = None


class IdempotencyStore:
    """Claims, completes and releases idempotency keys."""

    def __init__(
        self, db: AsyncDatabase[Document], *, ttl: timedelta = timedelta(hours=24)
    ) -> None:
        self._db = db
        self.collection: AsyncCollection[Document] = db[IDEMPOTENCY_KEYS]
        self._ttl = ttl

    async def create_indexes(self) -> None:
        """The expiry index of the sweep."""
        await ensure_indexes(self._db, INDEXES)

    async def claim(
        self, record_id: str, *, fingerprint: str, now: datetime
    ) -> StoredResponse | None:
        """Claim the key: None when claimed now; otherwise what is stored under it."""
        try:
            await self.collection.insert_one(
                {
                    "_id": record_id,
                    "fingerprint": fingerprint,
                    "state": "pending",
                    "claimed_at": now,
                    "expires_at": now + self._ttl,
                }
            )
            return None
        except DuplicateKeyError:
            pass
        doc = await self.collection.find_one({"_id": record_id})
        if doc is None:  # released between the insert and the read: try once more
            return await self.claim(record_id, fingerprint=fingerprint, now=now)
        if doc["state"] == "pending" and doc["fingerprint"] == fingerprint:
            taken = await self.collection.update_one(
                {
                    "_id": record_id,
                    "state": "pending",
                    "claimed_at": {"$lt": now - ABANDONED_AFTER},
                },
                {"$set": {"claimed_at": now}},
            )
            if taken.modified_count == 1:
                return None
        return StoredResponse(doc["fingerprint"], doc.get("status_code"), doc.get("body_encrypted"))

    async def complete(self, record_id: str, *, status_code: int, body_encrypted: str) -> None:
        """Store the response that retries will get."""
        await self.collection.update_one(
            {"_id": record_id},
            {
                "$set": {
                    "state": "done",
                    "status_code": status_code,
                    "body_encrypted": body_encrypted,
                }
            },
        )

    async def release(self, record_id: str) -> None:
        """Forget a claim whose request was refused or failed."""
        await self.collection.delete_one({"_id": record_id, "state": "pending"})

    async def purge_expired(self, *, now: datetime) -> int:
        """Delete expired records."""
        return (await self.collection.delete_many({"expires_at": {"$lt": now}})).deleted_count
