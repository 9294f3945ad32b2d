"""Sessions (refresh-token families), SMS challenges and SMS deliveries.

Refresh tokens are stored as SHA-256 digests only (they carry 256 random bits, so a plain
digest is safe); SMS codes as digests bound to their challenge id; a delivery holds the
message sealed to the SMS gateway's public key, which identity itself cannot open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.asynchronous.database import AsyncDatabase

from zerocontact.identity.domain.authentication import Aal, Method, SmsChallenge
from zerocontact.platform.mongo import CollectionIndexes, Document, ensure_indexes
from zerocontact.platform.outbox import OutboxEvent, ensure_outbox_index, outbox_document

SESSIONS = "sessions"
CHALLENGES = "sms_challenges"
DELIVERIES = "sms_deliveries"
# Digests of rotated-away refresh tokens kept for reuse detection (FerretDB has no $slice).
USED_KEPT = 20

INDEXES = [
    CollectionIndexes(SESSIONS, (IndexModel([("customer_id", ASCENDING)], name="customer"),)),
    CollectionIndexes(CHALLENGES, (IndexModel([("expires_at", ASCENDING)], name="expires"),)),
    CollectionIndexes(DELIVERIES, (IndexModel([("expires_at", ASCENDING)], name="expires"),)),
]


@dataclass(frozen=True)
class Session:
    """A login: its assurance, when the person last proved it, and its refresh-token family."""

    id: str
    customer_id: str
    aal: Aal
    methods: tuple[Method, ...]
    auth_time: datetime
    expires_at: datetime
    revoked: bool
    device_id: str


def _session(doc: Document) -> Session:
    return Session(
        id=doc["_id"],
        customer_id=doc["customer_id"],
        aal=Aal(doc["aal"]),
        methods=tuple(Method(m) for m in doc["methods"]),
        auth_time=doc["auth_time"],
        expires_at=doc["expires_at"],
        revoked=bool(doc["revoked"]),
        device_id=doc.get("device_id", ""),
    )


class RotationOutcome:
    """What presenting a refresh token led to."""

    ROTATED = "rotated"
    REUSED = "reused"
    UNKNOWN = "unknown"


class SessionRepository:
    """Sessions with their current refresh-token digest."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self._db = db
        self.collection: AsyncCollection[Document] = db[SESSIONS]

    async def create_indexes(self) -> None:
        """Sessions by customer (revoke all), challenge and delivery expiry sweeps."""
        await ensure_indexes(self._db, INDEXES)
        await ensure_outbox_index(self._db[DELIVERIES])

    async def add(self, session: Session, *, token_digest: str, now: datetime) -> None:
        """Store a new session with its first refresh-token digest."""
        await self.collection.insert_one(
            {
                "_id": session.id,
                "customer_id": session.customer_id,
                "aal": str(session.aal),
                "methods": [str(m) for m in session.methods],
                "auth_time": session.auth_time,
                "expires_at": session.expires_at,
                "revoked": False,
                "device_id": session.device_id,
                "current": token_digest,
                "used": [],
                "created_at": now,
            }
        )

    async def get(self, session_id: str) -> Session | None:
        """The session, or None."""
        doc = await self.collection.find_one({"_id": session_id})
        return _session(doc) if doc else None

    async def rotate(
        self, session_id: str, *, presented: str, replacement: str, now: datetime
    ) -> tuple[str, Session | None]:
        """Swap ``presented`` for ``replacement`` if it is the current token of a live session.

        A digest found among the rotated-away ones means the token was used twice (stolen
        or replayed): the whole family is revoked and ``REUSED`` returned.
        """
        doc = await self.collection.find_one({"_id": session_id})
        if doc is None:
            return RotationOutcome.UNKNOWN, None
        if doc["revoked"] or doc["expires_at"] <= now:
            return RotationOutcome.UNKNOWN, None
        if doc["current"] != presented:
            if presented in (doc.get("used") or []):
                await self.revoke(session_id, reason="refresh token reused", now=now)
                return RotationOutcome.REUSED, None
            return RotationOutcome.UNKNOWN, None
        used = [*(doc.get("used") or []), presented][-USED_KEPT:]
        after = await self.collection.find_one_and_update(
            {"_id": session_id, "current": presented, "revoked": False},
            {"$set": {"current": replacement, "used": used, "rotated_at": now}},
            return_document=ReturnDocument.AFTER,
        )
        if after is None:  # a concurrent refresh with the same token won: that is a reuse
            await self.revoke(session_id, reason="refresh token reused", now=now)
            return RotationOutcome.REUSED, None
        return RotationOutcome.ROTATED, _session(after)

    async def revoke(self, session_id: str, *, reason: str, now: datetime) -> bool:
        """Revoke a session (every refresh token of its family); True if it was live."""
        result = await self.collection.update_one(
            {"_id": session_id, "revoked": False},
            {"$set": {"revoked": True, "revoked_reason": reason, "revoked_at": now}},
        )
        return result.modified_count == 1

    async def live_of(self, customer_id: str, *, now: datetime) -> list[Session]:
        """A customer's sessions that are neither revoked nor expired, oldest first."""
        cursor = self.collection.find(
            {"customer_id": customer_id, "revoked": False, "expires_at": {"$gt": now}}
        ).sort("auth_time", ASCENDING)
        return [_session(doc) async for doc in cursor]

    async def find_by_token(self, session_id: str, digest: str) -> Session | None:
        """The session whose current refresh token has ``digest``."""
        doc = await self.collection.find_one({"_id": session_id, "current": digest})
        return _session(doc) if doc else None


class ChallengeRepository:
    """SMS challenges and the sealed deliveries the SMS gateway redeems."""

    def __init__(self, db: AsyncDatabase[Document]) -> None:
        self.challenges: AsyncCollection[Document] = db[CHALLENGES]
        self.deliveries: AsyncCollection[Document] = db[DELIVERIES]

    async def add_challenge(self, challenge: SmsChallenge, *, now: datetime) -> None:
        """Store a challenge (digest only)."""
        await self.challenges.insert_one(
            {
                "_id": challenge.id,
                "customer_id": challenge.customer_id,
                "code_digest": challenge.code_digest,
                "expires_at": challenge.expires_at,
                "attempts_left": challenge.attempts_left,
                "used": False,
                "created_at": now,
            }
        )

    async def get_challenge(self, challenge_id: str) -> SmsChallenge | None:
        """The challenge, or None."""
        doc = await self.challenges.find_one({"_id": challenge_id})
        if doc is None:
            return None
        return SmsChallenge(
            id=doc["_id"],
            customer_id=doc["customer_id"],
            code_digest=doc["code_digest"],
            expires_at=doc["expires_at"],
            attempts_left=int(doc["attempts_left"]),
            used=bool(doc["used"]),
        )

    async def spend_attempt(self, challenge_id: str) -> None:
        """One wrong code: one attempt fewer."""
        await self.challenges.update_one(
            {"_id": challenge_id, "attempts_left": {"$gt": 0}}, {"$inc": {"attempts_left": -1}}
        )

    async def consume(self, challenge_id: str) -> bool:
        """Mark a challenge used; False when another request used it first (single use)."""
        result = await self.challenges.update_one(
            {"_id": challenge_id, "used": False}, {"$set": {"used": True}}
        )
        return result.modified_count == 1

    async def add_delivery(
        self,
        *,
        delivery_id: str,
        customer_id: str,
        sealed: bytes,
        expires_at: datetime,
        events: Sequence[OutboxEvent],
    ) -> None:
        """Store a sealed delivery with its notification event (one write)."""
        doc: dict[str, Any] = {
            "_id": delivery_id,
            "customer_id": customer_id,
            "sealed": sealed,
            "claimed": False,
            "expires_at": expires_at,
            "version": 1,
            **outbox_document(events, version=1),
        }
        await self.deliveries.insert_one(doc)

    async def claim_delivery(self, delivery_id: str, *, now: datetime) -> bytes | None:
        """Hand the sealed message out once, then forget it; None if claimed or expired."""
        before = await self.deliveries.find_one_and_update(
            {"_id": delivery_id, "claimed": False, "expires_at": {"$gt": now}},
            {"$set": {"claimed": True, "claimed_at": now}, "$unset": {"sealed": ""}},
            return_document=ReturnDocument.BEFORE,
        )
        return bytes(before["sealed"]) if before and "sealed" in before else None

    async def purge_expired(self, *, now: datetime) -> int:
        """Delete expired challenges and deliveries (FerretDB has no TTL indexes)."""
        a = await self.challenges.delete_many({"expires_at": {"$lt": now}})
        b = await self.deliveries.delete_many(
            {"expires_at": {"$lt": now}, "_outbox_pending": False}
        )
        return a.deleted_count + b.deleted_count
