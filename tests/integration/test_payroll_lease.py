"""Batch leases on the real MongoDB-wire server: one process runs a batch at a time, a crashed
one's batch is taken over once its lease lapses, and a released lease is free at once."""

from __future__ import annotations

import asyncio
from typing import Any

from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.payroll.repository import PayrollRepository


async def test_one_owner_at_a_time_and_takeover_after_lapse(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = PayrollRepository(mongo_db)
    await repo.batches.insert_one({"_id": "b1", "state": "EXECUTING"})

    assert await repo.claim_batch("b1", "replica-a", 0.6)
    assert await repo.claim_batch("b1", "replica-a", 0.6)  # renewal by the owner
    assert not await repo.claim_batch("b1", "replica-b", 0.6)  # held by a

    await asyncio.sleep(0.8)  # a stopped renewing (crashed): the lease lapses
    assert await repo.claim_batch("b1", "replica-b", 0.6)
    assert not await repo.claim_batch("b1", "replica-a", 0.6)  # a came back too late

    await repo.release_batch("b1", "replica-a")  # not the owner: changes nothing
    assert not await repo.claim_batch("b1", "replica-c", 30)
    await repo.release_batch("b1", "replica-b")  # graceful stop of the owner
    assert await repo.claim_batch("b1", "replica-c", 30)
    doc = await repo.batches.find_one({"_id": "b1"})
    assert doc is not None and doc["lease_owner"] == "replica-c"


async def test_concurrent_claims_elect_exactly_one(
    mongo_db: AsyncDatabase[dict[str, Any]],
) -> None:
    repo = PayrollRepository(mongo_db)
    await repo.batches.insert_one({"_id": "b2", "state": "EXECUTING"})
    won = await asyncio.gather(*(repo.claim_batch("b2", f"r{i}", 30) for i in range(10)))
    assert sum(won) == 1
