"""Failure counters per source address, for brute force spread over many accounts."""

from __future__ import annotations

from datetime import datetime

from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.identity.domain.authentication import LockoutPolicy, Throttle
from zerocontact.platform.mongo import Document

SOURCE_THROTTLES = "source_throttles"
MAX_ATTEMPTS = 8


class SourceThrottleRepository:
    """One document per source address; updated by compare-and-set on its version."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db[SOURCE_THROTTLES]

    async def get(self, source: str) -> Throttle:
        """The source's counters (zero when it never failed)."""
        doc = await self.collection.find_one({"_id": source})
        return self._throttle(doc) if doc else Throttle()

    @staticmethod
    def _throttle(doc: Document) -> Throttle:
        return Throttle(int(doc["failures"]), int(doc["locks"]), doc.get("locked_until"))

    async def record_failure(self, source: str, policy: LockoutPolicy, now: datetime) -> Throttle:
        """Count one failure from ``source``; returns the counters after it."""
        for _ in range(MAX_ATTEMPTS):
            doc = await self.collection.find_one({"_id": source})
            throttle = self._throttle(doc) if doc else Throttle()
            throttle.record_failure(policy, now)
            fields = {
                "failures": throttle.failures,
                "locks": throttle.locks,
                "locked_until": throttle.locked_until,
                "updated_at": now,
            }
            if doc is None:
                try:
                    await self.collection.insert_one({"_id": source, "version": 1, **fields})
                except DuplicateKeyError:
                    continue
                return throttle
            result = await self.collection.update_one(
                {"_id": source, "version": doc["version"]},
                {"$set": {**fields, "version": doc["version"] + 1}},
            )
            if result.matched_count == 1:
                return throttle
        return throttle  # heavy contention on one source: the next failure counts again

    async def record_success(self, source: str) -> None:
        """A success from the source forgets its failures (a NAT shared with an attacker
        is not locked out for the honest users behind it longer than one round)."""
        await self.collection.delete_one({"_id": source, "locked_until": None})
