"""apply_once on a real MongoDB-wire server: an event's effect happens once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.idempotency import apply_once


async def test_the_same_event_applies_once(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    totals = mongo_db["totals"]
    inc = {"$inc": {"n": 5}}
    assert await apply_once(totals, doc_id="p1", event_id="e1", update=inc) is True
    assert await apply_once(totals, doc_id="p1", event_id="e1", update=inc) is False
    assert await apply_once(totals, doc_id="p1", event_id="e2", update=inc) is True
    results = await asyncio.gather(
        *(apply_once(totals, doc_id="p1", event_id="e3", update=inc) for _ in range(10))
    )
    assert results.count(True) == 1
    doc = await totals.find_one({"_id": "p1"})
    assert doc is not None
    assert doc["n"] == 15
    assert doc["_applied"] == ["e1", "e2", "e3"]


async def test_applied_ids_are_capped(mongo_db: AsyncDatabase[dict[str, Any]]) -> None:
    totals = mongo_db["totals"]
    for n in range(7):
        await apply_once(totals, doc_id="p", event_id=f"e{n}", update={"$inc": {"n": 1}}, keep=3)
    doc = await totals.find_one({"_id": "p"})
    assert doc is not None
    assert doc["_applied"] == ["e3", "e4", "e5", "e6"]  # trimmed to 3 at the 6th, one since
    assert doc["n"] == 7
    # A recent event is still recognised after trimming.
    assert (
        await apply_once(totals, doc_id="p", event_id="e5", update={"$inc": {"n": 1}}, keep=3)
        is False
    )


async def test_another_unique_violation_is_not_mistaken_for_a_duplicate(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    people = mongo_db["people"]
    await people.create_index("email", unique=True)
    await apply_once(people, doc_id="a", event_id="e1", update={"$set": {"email": "x@example.com"}})
    with pytest.raises(DuplicateKeyError):
        await apply_once(
            people, doc_id="b", event_id="e2", update={"$set": {"email": "x@example.com"}}
        )
