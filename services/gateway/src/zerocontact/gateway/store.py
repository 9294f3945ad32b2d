"""The gateway's own state in ``zc_gateway``: partners, ownership records, idempotency records.

Nothing here is business state: partners are registrations (scopes, rate, the digest of the
API credential), ownership records say which partner created a party, application, loan or
batch (immutable once written, so cached in memory without expiry), and idempotency records
hold the first response of a mutating call for at least 24 hours.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.mongo import CollectionIndexes, ensure_indexes
from zerocontact.platform.pii import FieldCipher

Document = dict[str, Any]

INDEXES = [CollectionIndexes("idempotency", [IndexModel([("created_at", ASCENDING)])])]


@dataclass(frozen=True)
class Partner:
    """A registered partner."""

    partner_id: str
    scopes: frozenset[str]
    rate_per_s: float
    credential_digest: bytes
    active: bool = True


def credential_digest(pepper: bytes, credential: str) -> bytes:
    """HMAC-SHA256 of a credential under the gateway's pepper (what is stored)."""
    return hmac.new(pepper, credential.encode(), hashlib.sha256).digest()


def new_credential() -> str:
    """A high-entropy API credential (256 bits), shown to the partner once."""
    return "zcp_" + secrets.token_urlsafe(32)


class PartnerStore:
    """Partner registrations, cached in memory (re-read after ``ttl_s``)."""

    def __init__(self, db: AsyncDatabase[Document], pepper: bytes, *, ttl_s: float = 30.0) -> None:
        self.db = db
        self.pepper = pepper
        self.ttl_s = ttl_s
        self._cache: dict[str, tuple[float, Partner | None]] = {}

    async def register(
        self,
        partner_id: str,
        scopes: list[str],
        *,
        rate_per_s: float,
        credential: str | None = None,
    ) -> str:
        """Register (or re-key) a partner; returns the credential (only its digest is kept)."""
        credential = credential or new_credential()
        await self.db["partners"].replace_one(
            {"_id": partner_id},
            {
                "_id": partner_id,
                "scopes": sorted(set(scopes)),
                "rate_per_s": float(rate_per_s),
                "credential_digest": credential_digest(self.pepper, credential),
                "active": True,
                "registered_at": datetime.now(UTC),
            },
            upsert=True,
        )
        self._cache.pop(partner_id, None)
        return credential

    async def deactivate(self, partner_id: str) -> bool:
        """Revoke a partner: every instance refuses it within the cache's ``ttl_s``.

        The registration stays (audit records name it); ``register`` re-activates with a new
        credential. False when no such partner is registered.
        """
        result = await self.db["partners"].update_one(
            {"_id": partner_id},
            {"$set": {"active": False, "deactivated_at": datetime.now(UTC)}},
        )
        self._cache.pop(partner_id, None)
        return result.matched_count == 1

    async def get(self, partner_id: str, now: float) -> Partner | None:
        """The partner, from the cache when fresh."""
        cached = self._cache.get(partner_id)
        if cached is not None and now - cached[0] < self.ttl_s:
            return cached[1]
        doc = await self.db["partners"].find_one({"_id": partner_id})
        partner = (
            Partner(
                doc["_id"],
                frozenset(doc["scopes"]),
                float(doc["rate_per_s"]),
                bytes(doc["credential_digest"]),
                bool(doc.get("active", True)),
            )
            if doc
            else None
        )
        self._cache[partner_id] = (now, partner)
        return partner

    def credential_matches(self, partner: Partner, credential: str) -> bool:
        """Constant-time comparison of the presented credential's digest."""
        return hmac.compare_digest(
            credential_digest(self.pepper, credential), partner.credential_digest
        )


class OwnershipStore:
    """Which partner a party, application, loan or batch belongs to (immutable records)."""

    def __init__(self, db: AsyncDatabase[Document], *, cache_size: int = 200_000) -> None:
        self.db = db
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size

    async def record(self, kind: str, resource_id: str, partner_id: str) -> None:
        """Record that ``partner_id`` owns the resource (idempotent; the first owner wins)."""
        key = f"{kind}:{resource_id}"
        with contextlib.suppress(DuplicateKeyError):  # recorded before: the check below decides
            await self.db["owners"].insert_one(
                {"_id": key, "partner": partner_id, "at": datetime.now(UTC)}
            )
        owner = await self.owner(kind, resource_id)
        if owner != partner_id:
            raise PermissionError(f"{kind} belongs to another partner")

    async def owner(self, kind: str, resource_id: str) -> str | None:
        """The owning partner, or None when no partner created it through the gateway."""
        key = f"{kind}:{resource_id}"
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        doc = await self.db["owners"].find_one({"_id": key})
        if doc is None:
            return None
        if len(self._cache) >= self._cache_size:
            self._cache.clear()  # crude bound; records are immutable so a miss just re-reads
        self._cache[key] = doc["partner"]
        return str(doc["partner"])


@dataclass(frozen=True)
class Claimed:
    """The outcome of claiming an idempotency key."""

    state: str  # "new", "replay", "mismatch", "in_flight"
    response: bytes = b""


class IdempotencyStore:
    """Records ``<partner>:<method>:<key>`` → request digest, state and first response bytes."""

    def __init__(
        self, db: AsyncDatabase[Document], cipher: FieldCipher, *, in_flight_timeout_s: float
    ) -> None:
        self.db = db
        # Responses may hold personal data (a customer's name): encrypted at rest, bound to
        # the record id.
        self.cipher = cipher
        self.in_flight_timeout = timedelta(seconds=in_flight_timeout_s)

    async def claim(self, record_id: str, request_digest: bytes) -> Claimed:
        """Claim the key for a new call, or say why not (replay, mismatch, in flight)."""
        now = datetime.now(UTC)
        try:
            await self.db["idempotency"].insert_one(
                {
                    "_id": record_id,
                    "digest": request_digest,
                    "state": "in_flight",
                    "created_at": now,
                }
            )
            return Claimed("new")
        except DuplicateKeyError:
            pass
        doc = await self.db["idempotency"].find_one({"_id": record_id})
        if doc is None:  # released between our insert and read: try once more
            return await self.claim(record_id, request_digest)
        if bytes(doc["digest"]) != request_digest:
            return Claimed("mismatch")
        if doc["state"] == "done":
            sealed = self.cipher.decrypt(doc["response"], context=record_id)
            return Claimed("replay", base64.b64decode(sealed))
        created = doc["created_at"]
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        if now - created > self.in_flight_timeout:
            # An instance crashed mid-call: take the key over (version-guarded by created_at).
            taken = await self.db["idempotency"].update_one(
                {"_id": record_id, "state": "in_flight", "created_at": doc["created_at"]},
                {"$set": {"created_at": now}},
            )
            if taken.modified_count == 1:
                return Claimed("new")
        return Claimed("in_flight")

    async def complete(self, record_id: str, response: bytes) -> None:
        """Keep the first successful response."""
        await self.db["idempotency"].update_one(
            {"_id": record_id},
            {
                "$set": {
                    "state": "done",
                    "response": self.cipher.encrypt(
                        base64.b64encode(response).decode(), context=record_id
                    ),
                    "completed_at": datetime.now(UTC),
                }
            },
        )

    async def release(self, record_id: str) -> None:
        """A refused call releases its key (only successes are kept, like the services)."""
        await self.db["idempotency"].delete_one({"_id": record_id})

    async def purge(self, older_than: datetime) -> int:
        """Delete records created before ``older_than`` (FerretDB has no TTL indexes)."""
        result = await self.db["idempotency"].delete_many({"created_at": {"$lt": older_than}})
        return int(result.deleted_count)


async def prepare(db: AsyncDatabase[Document]) -> None:
    """Create the gateway's indexes."""
    await ensure_indexes(db, INDEXES)
