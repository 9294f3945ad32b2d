"""Idempotent consumers: an event's effect and the record that it was applied, in one write.

The projection document an event changes carries ``_applied``, the ids (``ce_id``) of the
last events applied to it. The update is guarded by ``_applied != ce_id`` and pushes the id
in the same single-document write, so applying the same event twice changes nothing, even
across crashes and redeliveries.

The list is kept to about ``keep`` ids: redeliveries come from uncommitted offsets, so they
are recent; a document that receives more than ``keep`` events between a record's first
delivery and its redelivery is outside the guarantee. FerretDB 1.24 ignores ``$slice`` in
``$push``, so the list is trimmed by a compare-and-set on the ``_applied_n`` counter every
``keep`` applications instead.
"""

from __future__ import annotations

from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError

APPLIED = "_applied"
APPLIED_COUNT = "_applied_n"
DEFAULT_KEEP = 1000


async def apply_once(
    collection: AsyncCollection[dict[str, Any]],
    *,
    doc_id: Any,
    event_id: str,
    update: dict[str, Any],
    upsert: bool = True,
    keep: int = DEFAULT_KEEP,
) -> bool:
    """Apply ``update`` to ``doc_id`` unless ``event_id`` was applied already; True if applied."""
    if APPLIED in update.get("$push", {}) or APPLIED_COUNT in update.get("$inc", {}):
        raise ValueError(f"update must not touch {APPLIED} or {APPLIED_COUNT}")
    guarded = {
        **update,
        "$push": {**update.get("$push", {}), APPLIED: event_id},
        "$inc": {**update.get("$inc", {}), APPLIED_COUNT: 1},
    }
    try:
        after = await collection.find_one_and_update(
            {"_id": doc_id, APPLIED: {"$ne": event_id}},
            guarded,
            upsert=upsert,
            # no projection: FerretDB 1.24's findAndModify does not implement "fields"
            return_document=ReturnDocument.AFTER,
        )
    except DuplicateKeyError:
        # The guard did not match an existing document, so the upsert tried to insert its
        # _id again: the event was applied before, unless another unique index refused it.
        if await collection.find_one({"_id": doc_id, APPLIED: event_id}, {"_id": 1}):
            return False
        raise
    if after is None:
        return False
    if after[APPLIED_COUNT] % keep == 0:
        await _trim(collection, doc_id, keep)
    return True


async def _trim(collection: AsyncCollection[dict[str, Any]], doc_id: Any, keep: int) -> None:
    doc = await collection.find_one({"_id": doc_id}, {APPLIED: 1, APPLIED_COUNT: 1})
    if doc is None or len(doc[APPLIED]) <= keep:
        return
    # Only if nothing was applied since the read; otherwise the next round trims.
    await collection.update_one(
        {"_id": doc_id, APPLIED_COUNT: doc[APPLIED_COUNT]},
        {"$set": {APPLIED: doc[APPLIED][-keep:]}},
    )
