"""Start-up index creation is idempotent: a restarted service finds its indexes and goes on."""

from __future__ import annotations

from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.mongo import CollectionIndexes, ensure_indexes

SPECS = [
    CollectionIndexes(
        "things",
        (
            IndexModel([("key", ASCENDING)], unique=True, name="key_unique"),
            IndexModel([("owner", ASCENDING), ("at", ASCENDING)], name="owner_at"),
        ),
    )
]


async def test_ensure_indexes_twice_like_a_restart(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    await ensure_indexes(mongo_db, SPECS)
    await mongo_db.things.insert_one({"key": "a"})
    await ensure_indexes(mongo_db, SPECS)  # FerretDB 1.24 closed the connection here when batched
    info = await mongo_db.things.index_information()
    assert info["key_unique"]["unique"] is True
    assert info["owner_at"]["key"] == [("owner", 1), ("at", 1)]
    try:
        await mongo_db.things.insert_one({"key": "a"})
    except DuplicateKeyError:
        pass
    else:
        raise AssertionError("the unique index did not refuse a duplicate key")
