"""Customers and enterprises: state, KYC audit trail and outbox events in one document write.

Personal data is stored as ciphertext (``*_encrypted``, AES-GCM with the key id in front),
a blind index (``*_index``, HMAC) with a unique index for duplicate detection, and the mask
shown in responses (``*_masked``). Every update is guarded by the version read before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from bson import Int64
from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.identity.domain.authentication import Credentials, Throttle
from zerocontact.identity.domain.errors import DuplicateParty
from zerocontact.identity.domain.kyc import KycLevel, KycTransition
from zerocontact.identity.domain.parties import Customer, Enterprise
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

CUSTOMERS = "customers"
ENTERPRISES = "enterprises"
INDEXES = [
    CollectionIndexes(
        CUSTOMERS,
        (
            IndexModel([("id_number_index", ASCENDING)], unique=True, name="id_number_unique"),
            IndexModel([("phone_index", ASCENDING)], unique=True, name="phone_unique"),
        ),
    ),
    CollectionIndexes(
        ENTERPRISES,
        (
            IndexModel([("credit_code", ASCENDING)], unique=True, name="credit_code_unique"),
            IndexModel([("representative_id", ASCENDING)], name="representative"),
        ),
    ),
]


@dataclass
class CustomerRecord:
    """A customer with its credentials, failure counters and encrypted personal data."""

    customer: Customer
    credentials: Credentials
    throttle: Throttle
    encrypted: dict[str, str]  # id_number, phone, birth_date, address -> ciphertext
    indexes: dict[str, str] = field(default_factory=dict)  # id_number, phone -> blind index


def _transition_doc(t: KycTransition) -> Document:
    return {
        "from": str(t.from_level),
        "to": str(t.to_level),
        "actor": t.actor,
        "reason": t.reason,
        "evidence": t.evidence,
        "at": t.at,
    }


def _transition(doc: Document) -> KycTransition:
    return KycTransition(
        KycLevel(doc["from"]),
        KycLevel(doc["to"]),
        doc["actor"],
        doc["reason"],
        doc["evidence"],
        doc["at"],
    )


def _credentials_doc(c: Credentials) -> Document:
    return {
        "password_hash": c.password_hash,
        "totp_secret_encrypted": c.totp_secret_encrypted,
        "totp_pending_encrypted": c.totp_pending_encrypted,
        "totp_last_step": Int64(c.totp_last_step),
        "recovery_codes": dict(c.recovery_codes),
    }


def _throttle_doc(t: Throttle) -> Document:
    return {"failures": t.failures, "locks": t.locks, "locked_until": t.locked_until}


def _customer_doc(record: CustomerRecord) -> Document:
    c = record.customer
    return {
        "name": c.name,
        "id_number_masked": c.id_number_masked,
        "phone_masked": c.phone_masked,
        "address_masked": c.address_masked,
        "registered_at": c.registered_at,
        "kyc_level": str(c.kyc_level),
        "kyc_history": [_transition_doc(t) for t in c.kyc_history],
        "credentials": _credentials_doc(record.credentials),
        "throttle": _throttle_doc(record.throttle),
        "version": c.version,
        **{f"{k}_encrypted": v for k, v in record.encrypted.items()},
        **{f"{k}_index": v for k, v in record.indexes.items()},
    }


def _customer_record(doc: Document, birth_date: date) -> CustomerRecord:
    creds = doc["credentials"]
    throttle = doc.get("throttle") or {}
    customer = Customer(
        id=doc["_id"],
        name=doc["name"],
        id_number_masked=doc["id_number_masked"],
        phone_masked=doc["phone_masked"],
        birth_date=birth_date,
        address_masked=doc["address_masked"],
        registered_at=doc["registered_at"],
        kyc_level=KycLevel(doc["kyc_level"]),
        kyc_history=[_transition(t) for t in doc.get("kyc_history") or []],
        version=doc["version"],
    )
    return CustomerRecord(
        customer=customer,
        credentials=Credentials(
            password_hash=creds["password_hash"],
            totp_secret_encrypted=creds.get("totp_secret_encrypted"),
            totp_pending_encrypted=creds.get("totp_pending_encrypted"),
            totp_last_step=int(creds.get("totp_last_step") or 0),
            recovery_codes=dict(creds.get("recovery_codes") or {}),
        ),
        throttle=Throttle(
            failures=int(throttle.get("failures", 0)),
            locks=int(throttle.get("locks", 0)),
            locked_until=throttle.get("locked_until"),
        ),
        encrypted={
            k: doc[f"{k}_encrypted"]
            for k in ("id_number", "phone", "birth_date", "address")
            if f"{k}_encrypted" in doc
        },
        indexes={k: doc[f"{k}_index"] for k in ("id_number", "phone") if f"{k}_index" in doc},
    )


def _enterprise_doc(e: Enterprise) -> Document:
    return {
        "name": e.name,
        "credit_code": e.credit_code,
        "representative_id": e.representative_id,
        "business_category": e.business_category,
        "registered_capital": {
            "currency": e.registered_capital.currency,
            "minor_units": Int64(e.registered_capital.minor_units),
        },
        "registered_at": e.registered_at,
        "kyc_level": str(e.kyc_level),
        "kyc_history": [_transition_doc(t) for t in e.kyc_history],
        "version": e.version,
    }


def _enterprise(doc: Document) -> Enterprise:
    capital = doc["registered_capital"]
    return Enterprise(
        id=doc["_id"],
        name=doc["name"],
        credit_code=doc["credit_code"],
        representative_id=doc["representative_id"],
        business_category=doc["business_category"],
        registered_capital=Money(capital["currency"], int(capital["minor_units"])),
        registered_at=doc["registered_at"],
        kyc_level=KycLevel(doc["kyc_level"]),
        kyc_history=[_transition(t) for t in doc.get("kyc_history") or []],
        version=doc["version"],
    )


class PartyRepository:
    """Loads and stores customers and enterprises with their outbox events."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self.customers: AsyncCollection[Document] = db[CUSTOMERS]
        self.enterprises: AsyncCollection[Document] = db[ENTERPRISES]

    async def create_indexes(self) -> None:
        """Unique blind indexes (duplicates) and the outbox sweep indexes."""
        await ensure_indexes(self._db, INDEXES)
        await ensure_outbox_index(self.customers)
        await ensure_outbox_index(self.enterprises)

    async def add_customer(self, record: CustomerRecord, events: Sequence[OutboxEvent]) -> bool:
        """Insert a new customer with its events; False when its ID or phone exists already."""
        doc = {"_id": record.customer.id, **_customer_doc(record)}
        doc |= outbox_document(events, version=record.customer.version)
        try:
            await self.customers.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def customer_exists_with(self, *, id_number_index: str, phone_index: str) -> str | None:
        """Which unique field a registration collides on: ``"id_number"``, ``"phone"`` or None."""
        if await self.customers.find_one({"id_number_index": id_number_index}, {"_id": 1}):
            return "id_number"
        if await self.customers.find_one({"phone_index": phone_index}, {"_id": 1}):
            return "phone"
        return None

    async def get_customer_doc(self, customer_id: str) -> Document | None:
        """The raw document (the handler decrypts what it needs)."""
        return await self.customers.find_one({"_id": customer_id})

    async def find_customer_doc_by_phone(self, phone_index: str) -> Document | None:
        """The customer whose phone has this blind index."""
        return await self.customers.find_one({"phone_index": phone_index})

    @staticmethod
    def customer_record(doc: Document, birth_date: date) -> CustomerRecord:
        """Build a record from a document; ``birth_date`` is the decrypted value."""
        return _customer_record(doc, birth_date)

    async def save_customer(self, record: CustomerRecord, events: Sequence[OutboxEvent]) -> None:
        """Store the record (``customer.version`` already incremented) if nobody wrote since."""
        c = record.customer
        try:
            result = await self.customers.update_one(
                {"_id": c.id, "version": c.version - 1},
                {"$set": {**_customer_doc(record), **outbox_fields(events, version=c.version)}},
            )
        except DuplicateKeyError:  # a changed phone collides with a concurrent registration
            raise DuplicateParty(
                "a customer with this phone number is registered already", field="phone"
            ) from None
        if result.matched_count != 1:
            raise ConcurrentUpdate(c.id)

    async def add_enterprise(self, enterprise: Enterprise, events: Sequence[OutboxEvent]) -> bool:
        """Insert a new enterprise with its events; False when its credit code exists already."""
        doc = {"_id": enterprise.id, **_enterprise_doc(enterprise)}
        doc |= outbox_document(events, version=enterprise.version)
        try:
            await self.enterprises.insert_one(doc)
        except DuplicateKeyError:
            return False
        return True

    async def get_enterprise(self, enterprise_id: str) -> Enterprise | None:
        """The enterprise, or None."""
        doc = await self.enterprises.find_one({"_id": enterprise_id})
        return _enterprise(doc) if doc else None

    async def enterprises_represented_by(self, customer_id: str) -> list[Enterprise]:
        """Every enterprise whose legal representative is ``customer_id``."""
        return [
            _enterprise(d) async for d in self.enterprises.find({"representative_id": customer_id})
        ]

    async def save_enterprise(self, enterprise: Enterprise, events: Sequence[OutboxEvent]) -> None:
        """Store the enterprise (version already incremented) if nobody wrote since."""
        result = await self.enterprises.update_one(
            {"_id": enterprise.id, "version": enterprise.version - 1},
            {
                "$set": {
                    **_enterprise_doc(enterprise),
                    **outbox_fields(events, version=enterprise.version),
                }
            },
        )
        if result.matched_count != 1:
            raise ConcurrentUpdate(enterprise.id)
