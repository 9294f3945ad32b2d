"""Payroll's collections and their indexes, and the ``_id`` of a chunk's document."""

from __future__ import annotations

from pymongo import ASCENDING, IndexModel

from zerocontact.platform.mongo import CollectionIndexes

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
