"""The MongoDB-wire server applies each single-document write atomically.

Every pattern in the platform (optimistic versions, idempotent consumers, ledger guards)
relies on it. Upstream FerretDB 1.24 does not guarantee it (FerretDB#3040); the embedded
build carries deploy/local/ferretdb/serialize-writes.patch, and this test fails without it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase

WRITERS = 10
TRIALS = 10


async def test_concurrent_compare_and_set_has_one_winner(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    docs = mongo_db["cas"]
    for trial in range(TRIALS):
        await docs.insert_one({"_id": trial, "version": 0, "n": 0})
        results = await asyncio.gather(
            *(
                docs.update_one(
                    {"_id": trial, "version": 0}, {"$set": {"version": 1}, "$inc": {"n": 1}}
                )
                for _ in range(WRITERS)
            )
        )
        assert sum(r.modified_count for r in results) == 1
        assert (await docs.find_one({"_id": trial}) or {})["n"] == 1


async def test_concurrent_guarded_push_applies_once(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    docs = mongo_db["guarded"]
    for trial in range(TRIALS):
        await docs.insert_one({"_id": trial, "seen": [], "n": 0})
        results = await asyncio.gather(
            *(
                docs.find_one_and_update(
                    {"_id": trial, "seen": {"$ne": "e"}},
                    {"$push": {"seen": "e"}, "$inc": {"n": 1}},
                    return_document=ReturnDocument.AFTER,
                )
                for _ in range(WRITERS)
            )
        )
        assert sum(r is not None for r in results) == 1
        assert (await docs.find_one({"_id": trial}) or {})["n"] == 1


async def test_concurrent_increments_are_not_lost(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    docs = mongo_db["counters"]
    await docs.insert_one({"_id": "c", "n": 0})
    await asyncio.gather(*(docs.update_one({"_id": "c"}, {"$inc": {"n": 1}}) for _ in range(50)))
    assert (await docs.find_one({"_id": "c"}) or {})["n"] == 50
