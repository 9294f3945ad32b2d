"""MongoDB storage of the trust services; every document is keyed and read by ``_id``.

Recordings and consented face images go to GridFS buckets (plain ``<bucket>.files`` and
``<bucket>.chunks`` collections, which FerretDB 1.24 serves: checked by upload and download
of a 3 MB file) and are AES-GCM encrypted before upload. Events ride in the writing
document's outbox, as everywhere in identity.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from gridfs import AsyncGridFSBucket
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.identity.repository import ConcurrentUpdate
from zerocontact.platform.outbox import (
    OutboxEvent,
    ensure_outbox_index,
    outbox_document,
    outbox_fields,
)

Document = dict[str, Any]
FACE_TEMPLATES = "face_templates"
FACE_VERIFICATIONS = "face_verifications"
DUAL_RECORDINGS = "dual_recordings"
CONTRACT_TEMPLATES = "contract_templates"
CONTRACTS = "contracts"


class TrustRepository:
    """Face templates, verifications, recordings, contract templates and contracts."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        """Collections and GridFS buckets of ``db``."""
        self.templates = db[FACE_TEMPLATES]
        self.verifications = db[FACE_VERIFICATIONS]
        self.recordings = db[DUAL_RECORDINGS]
        self.contract_templates = db[CONTRACT_TEMPLATES]
        self.contracts = db[CONTRACTS]
        self.recording_files = AsyncGridFSBucket(db, bucket_name="trust_recordings")
        self.face_images = AsyncGridFSBucket(db, bucket_name="trust_face_images")

    def outbox_collections(self) -> list[Any]:
        """The collections whose documents carry outbox events."""
        return [self.templates, self.verifications, self.recordings, self.contracts]

    async def create_indexes(self) -> None:
        """The relay's pending-outbox index on each collection with events."""
        for collection in self.outbox_collections():
            await ensure_outbox_index(collection)

    async def put_template(self, doc: Document, events: Sequence[OutboxEvent]) -> None:
        """Create or replace a customer's face template (re-enrolment replaces)."""
        current = await self.templates.find_one({"_id": doc["_id"]})
        version = (current or {}).get("version", 0) + 1
        full = {**doc, "version": version, **outbox_document(events, version=version)}
        if current is None:
            await self.templates.insert_one(full)
            return
        result = await self.templates.replace_one(
            {"_id": doc["_id"], "version": current["version"]}, full
        )
        if result.modified_count != 1:
            raise ConcurrentUpdate(doc["_id"])

    async def get_template(self, customer_id: str) -> Document | None:
        """The customer's template document."""
        return await self.templates.find_one({"_id": customer_id})

    async def add_verification(
        self, doc: Document, events: Sequence[OutboxEvent], *, customer_id: str, summary: Document
    ) -> None:
        """Store a verification (with its event) and remember it on the customer's template."""
        await self.verifications.insert_one({**doc, **outbox_document(events, version=1)})
        await self.templates.update_one(
            {"_id": customer_id}, {"$set": {"last_verification": summary}}
        )

    async def store_file(self, bucket: AsyncGridFSBucket, name: str, data: bytes) -> Any:
        """Upload bytes to a GridFS bucket; return the file id."""
        return await bucket.upload_from_stream(name, data)

    async def read_file(self, bucket: AsyncGridFSBucket, file_id: Any) -> bytes:
        """Download a GridFS file."""
        stream = await bucket.open_download_stream(file_id)
        data: bytes = await stream.read()
        return data

    async def add_recording(self, doc: Document, events: Sequence[OutboxEvent]) -> None:
        """Store a dual recording's metadata with its event."""
        await self.recordings.insert_one({**doc, **outbox_document(events, version=1)})

    async def get_recording(self, recording_id: str) -> Document | None:
        """A dual recording's metadata."""
        return await self.recordings.find_one({"_id": recording_id})

    async def expired_recordings(self, now: datetime, *, limit: int) -> list[Document]:
        """Recordings past their retention date whose file is still stored. A scan of
        ``dual_recordings`` on FerretDB 1.24 (no index serves it): run hourly, not per
        request; one row per recording, so ~1.4 µs per stored recording."""
        cursor = self.recordings.find(
            {"retain_until": {"$lt": now}, "purged_at": None}, {"_outbox": 0}
        )
        return await cursor.limit(limit).to_list()

    async def mark_recording_purged(
        self, recording_id: str, *, at: datetime, events: Sequence[OutboxEvent]
    ) -> bool:
        """Keep the record (hash, steps, dates) with the deletion time and its event; the file
        is gone. Once only (``purged_at`` unset), so the outbox key of version 2 is free."""
        result = await self.recordings.update_one(
            {"_id": recording_id, "purged_at": None},
            {"$set": {"purged_at": at, **outbox_fields(events, version=2)}},
        )
        return result.modified_count == 1

    async def add_contract_template(self, doc: Document) -> bool:
        """Create a template; False if the id exists (templates are immutable: version the id)."""
        if await self.contract_templates.find_one({"_id": doc["_id"]}) is not None:
            return False
        await self.contract_templates.insert_one(doc)
        return True

    async def get_contract_template(self, template_id: str) -> Document | None:
        """A contract template."""
        return await self.contract_templates.find_one({"_id": template_id})

    async def add_contract(self, doc: Document) -> None:
        """Create a draft contract."""
        await self.contracts.insert_one({**doc, "version": 1})

    async def get_contract(self, contract_id: str) -> Document | None:
        """A contract."""
        return await self.contracts.find_one({"_id": contract_id})

    async def claim_for_signing(self, contract_id: str, *, version: int) -> bool:
        """DRAFT -> SIGNING (version-guarded): its leaf is queued, the receipt not yet back."""
        result = await self.contracts.update_one(
            {"_id": contract_id, "version": version, "status": "DRAFT"},
            {"$set": {"status": "SIGNING", "version": version + 1}},
        )
        return result.modified_count == 1

    async def mark_signed(
        self, contract_id: str, *, version: int, fields: Document, events: Sequence[OutboxEvent],
        at: datetime,
    ) -> None:  # fmt: skip
        """DRAFT or SIGNING -> SIGNED with the evidence, receipt and event (version-guarded).
        From DRAFT when the request died between queueing the leaf and claiming the contract:
        the leaf is in the log, so the contract is signed."""
        update = {**fields, "status": "SIGNED", "signed_at": at, "version": version + 1}
        update.update(outbox_fields(events, version=version + 1))
        result = await self.contracts.update_one(
            {"_id": contract_id, "version": version, "status": {"$in": ["DRAFT", "SIGNING"]}},
            {"$set": update},
        )
        if result.modified_count != 1:
            raise ConcurrentUpdate(contract_id)
