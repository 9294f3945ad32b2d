"""Accounts in MongoDB: state and pending events written together, one document per account."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bson import Int64
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.money import Money
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import (
    ConcurrentUpdate as ConcurrentUpdate,  # re-exported: the service's callers catch it
)
from zerocontact.platform.outbox import (
    OutboxEvent,
    ensure_outbox_index,
    outbox_document,
    outbox_fields,
)
from zerocontact.skeleton.domain import Account

ACCOUNTS = "accounts"
INDEXES = [
    CollectionIndexes(
        ACCOUNTS,
        (
            IndexModel([("open_key", ASCENDING)], unique=True, name="open_key_unique"),
            IndexModel([("holder_phone_index", ASCENDING)], name="holder_phone_index"),
        ),
    )
]


class AccountRepository:
    """Loads and stores :class:`Account` aggregates with their outbox events."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.collection: AsyncCollection[Document] = db[ACCOUNTS]
        self._db = db

    async def create_indexes(self) -> None:
        await ensure_indexes(self._db, INDEXES)
        await ensure_outbox_index(self.collection)

    async def get(self, account_id: str) -> Account | None:
        doc = await self.collection.find_one({"_id": account_id})
        return _account(doc) if doc else None

    async def get_by_open_key(self, open_key: str) -> tuple[Account, str] | None:
        """The account opened under ``open_key`` and that request's fingerprint."""
        doc = await self.collection.find_one({"open_key": open_key})
        return (_account(doc), doc["open_fingerprint"]) if doc else None

    async def add(
        self,
        account: Account,
        *,
        open_key: str,
        open_fingerprint: str,
        holder_phone_encrypted: str,
        holder_phone_index: str,
        events: Sequence[OutboxEvent],
    ) -> bool:
        """Insert a new account with its events; False if ``open_key`` was used already."""
        doc: dict[str, Any] = {
            "_id": account.id,
            "holder_name": account.holder_name,
            "holder_phone_encrypted": holder_phone_encrypted,
            "holder_phone_index": holder_phone_index,
            "holder_phone_masked": account.holder_phone_masked,
            "currency": account.currency,
            "balance_minor": Int64(account.balance.minor_units),
            "opened_at": account.opened_at,
            "version": account.version,
            "deposits": {},
            "open_key": open_key,
            "open_fingerprint": open_fingerprint,
            **outbox_document(events, version=account.version),
        }
        try:
            await self.collection.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def save_deposit(
        self, account: Account, *, deposit_id: str, events: Sequence[OutboxEvent]
    ) -> None:
        """Store the deposited state if nobody wrote since ``account.version - 1`` was read."""
        result = await self.collection.update_one(
            {"_id": account.id, "version": account.version - 1},
            {
                "$set": {
                    "balance_minor": Int64(account.balance.minor_units),
                    "version": account.version,
                    f"deposits.{deposit_id}": account.deposits[deposit_id],
                    **outbox_fields(events, version=account.version),
                }
            },
        )
        if result.matched_count != 1:
            raise ConcurrentUpdate(account.id)


def _account(doc: Document) -> Account:
    return Account(
        id=doc["_id"],
        holder_name=doc["holder_name"],
        holder_phone_masked=doc["holder_phone_masked"],
        currency=doc["currency"],
        balance=Money(doc["currency"], int(doc["balance_minor"])),
        opened_at=doc["opened_at"],
        version=doc["version"],
        deposits=dict(doc.get("deposits") or {}),
    )
