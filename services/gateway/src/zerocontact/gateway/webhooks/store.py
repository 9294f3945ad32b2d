"""Webhook endpoints and the delivery log (``zc_gateway``).

``webhook_endpoints``: a partner's URL, event types and signing secret (AES-GCM under the
gateway's ``pii_key``, bound to the endpoint id: a copied ciphertext does not decrypt).

``webhook_deliveries``: one document per (endpoint, event), ``_id = "<endpoint>:<event id>"``,
so a Kafka record read twice never makes a second delivery. States::

    PENDING ──claim (atomic, due_at ≤ now)──▶ DELIVERING ──2xx──▶ SUCCEEDED
       ▲                                        │
       └──── failure, next attempt before ──────┤
             expires_at (back-off + jitter)     └─ failure past expires_at ─▶ FAILED
    DELIVERING whose lease passed (instance died) is claimable again;
    ReplayWebhooks: SUCCEEDED / FAILED / PENDING ──▶ PENDING (due now, a fresh max age).

``due_at`` is the one field the sender's periodic query reads (indexed): the next attempt of a
pending delivery, the lease end of one being delivered, absent once it ended.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pymongo import ASCENDING, IndexModel, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from zerocontact.platform.mongo import CollectionIndexes
from zerocontact.platform.pii import FieldCipher

Document = dict[str, Any]

PENDING, DELIVERING, SUCCEEDED, FAILED = "PENDING", "DELIVERING", "SUCCEEDED", "FAILED"

INDEXES = [
    CollectionIndexes("webhook_endpoints", [IndexModel([("partner", ASCENDING)])]),
    CollectionIndexes(
        "webhook_deliveries",
        [
            IndexModel([("due_at", ASCENDING)]),
            IndexModel([("partner", ASCENDING), ("created_at", ASCENDING), ("_id", ASCENDING)]),
        ],
    ),
]


def utcnow() -> datetime:
    """Now, at MongoDB's millisecond precision (so a value read back compares equal)."""
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


def aware(value: datetime) -> datetime:
    """``value`` with UTC attached (PyMongo returns naive UTC datetimes)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Endpoint:
    """A registered endpoint (secret decrypted: only in memory)."""

    endpoint_id: str
    partner_id: str
    url: str
    event_types: frozenset[str]
    created_at: datetime
    active: bool
    secret: str = ""


class WebhookStore:
    """Endpoints and deliveries."""

    def __init__(self, db: AsyncDatabase[Document], cipher: FieldCipher) -> None:
        self.endpoints = db["webhook_endpoints"]
        self.deliveries = db["webhook_deliveries"]
        self.cipher = cipher

    # -- endpoints ------------------------------------------------------------------------

    def _endpoint(self, doc: Document, *, with_secret: bool = False) -> Endpoint:
        secret = ""
        if with_secret:
            secret = self.cipher.decrypt(doc["secret"], context=f"webhook-endpoint:{doc['_id']}")
        return Endpoint(
            doc["_id"], doc["partner"], doc["url"], frozenset(doc["event_types"]),
            aware(doc["created_at"]), bool(doc["active"]), secret,
        )  # fmt: skip

    async def create_endpoint(
        self, partner_id: str, url: str, event_types: list[str], secret: str
    ) -> Endpoint:
        """Register an endpoint; the secret is stored encrypted."""
        endpoint_id = "we_" + base64.b32encode(secrets.token_bytes(10)).decode().lower()
        doc = {
            "_id": endpoint_id,
            "partner": partner_id,
            "url": url,
            "event_types": sorted(set(event_types)),
            "secret": self.cipher.encrypt(secret, context=f"webhook-endpoint:{endpoint_id}"),
            "active": True,
            "created_at": utcnow(),
        }
        await self.endpoints.insert_one(doc)
        return self._endpoint(doc)

    async def list_endpoints(self, partner_id: str) -> list[Endpoint]:
        """A partner's endpoints, oldest first (no secrets)."""
        cursor = self.endpoints.find({"partner": partner_id}).sort("created_at", ASCENDING)
        return [self._endpoint(doc) async for doc in cursor]

    async def owns_endpoint(self, partner_id: str, endpoint_id: str) -> bool:
        """Whether ``endpoint_id`` is one of the partner's endpoints (active or not)."""
        doc = await self.endpoints.find_one({"_id": endpoint_id, "partner": partner_id}, {"_id": 1})
        return doc is not None

    async def count_active(self, partner_id: str) -> int:
        """How many active endpoints the partner has."""
        return int(await self.endpoints.count_documents({"partner": partner_id, "active": True}))

    async def deactivate(self, partner_id: str, endpoint_id: str) -> Endpoint | None:
        """Stop an endpoint of the partner (None when it has no such endpoint)."""
        doc = await self.endpoints.find_one_and_update(
            {"_id": endpoint_id, "partner": partner_id},
            {"$set": {"active": False, "deactivated_at": utcnow()}},
            return_document=ReturnDocument.AFTER,
        )
        return self._endpoint(doc) if doc else None

    async def active_endpoints(self) -> list[Endpoint]:
        """Every active endpoint with its secret (the dispatcher's cache)."""
        cursor = self.endpoints.find({"active": True})
        return [self._endpoint(doc, with_secret=True) async for doc in cursor]

    # -- deliveries -----------------------------------------------------------------------

    async def add_delivery(
        self,
        endpoint: Endpoint,
        *,
        event_id: str,
        event_type: str,
        event_time: datetime,
        body: str,
        max_age_s: float,
    ) -> bool:
        """Queue a delivery, due now; False when this (endpoint, event) has one already."""
        now = utcnow()
        try:
            await self.deliveries.insert_one(
                {
                    "_id": f"{endpoint.endpoint_id}:{event_id}",
                    "partner": endpoint.partner_id,
                    "endpoint_id": endpoint.endpoint_id,
                    "event_id": event_id,
                    "event_type": event_type,
                    "event_time": event_time,
                    "body": body,
                    "status": PENDING,
                    "attempts": 0,
                    "last_error": "",
                    "last_status_code": 0,
                    "due_at": now,
                    "next_attempt_at": now,
                    "expires_at": now + timedelta(seconds=max_age_s),
                    "created_at": now,
                }
            )
        except DuplicateKeyError:
            return False
        return True

    async def due(self, now: datetime, limit: int) -> list[Document]:
        """Deliveries due (pending, or delivering with a lapsed lease): the sender's one
        indexed query per tick."""
        cursor = (
            self.deliveries.find(
                {"due_at": {"$lte": now}}, {"_id": 1, "due_at": 1, "endpoint_id": 1}
            )
            .sort("due_at", ASCENDING)
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def claim(self, doc: Document, now: datetime, lease_s: float) -> Document | None:
        """Take a due delivery for one attempt (atomic: exactly one instance wins)."""
        claim = secrets.token_hex(8)
        claimed: Document | None = await self.deliveries.find_one_and_update(
            {"_id": doc["_id"], "due_at": doc["due_at"]},
            {
                "$set": {
                    "status": DELIVERING,
                    "due_at": now + timedelta(seconds=lease_s),
                    "claim": claim,
                },
                "$unset": {"next_attempt_at": ""},
            },
            return_document=ReturnDocument.AFTER,
        )
        return claimed

    async def succeeded(self, doc: Document, status_code: int, now: datetime) -> None:
        """The receiver accepted it."""
        await self.deliveries.update_one(
            {"_id": doc["_id"], "claim": doc["claim"]},
            {
                "$set": {
                    "status": SUCCEEDED, "delivered_at": now, "last_status_code": status_code,
                    "last_error": "",
                },
                "$inc": {"attempts": 1},
                "$unset": {"due_at": "", "claim": ""},
            },
        )  # fmt: skip

    async def attempt_failed(
        self, doc: Document, error: str, status_code: int, now: datetime, retry_in_s: float
    ) -> str:
        """Record a failed attempt: pending again after ``retry_in_s``, or FAILED when that
        is past the delivery's maximum age. Returns the new status."""
        next_at = now + timedelta(seconds=retry_in_s)
        if next_at > aware(doc["expires_at"]):
            change: Document = {
                "$set": {"status": FAILED, "last_error": error, "last_status_code": status_code},
                "$unset": {"due_at": "", "claim": ""},
            }
            status = FAILED
        else:
            change = {
                "$set": {
                    "status": PENDING, "last_error": error, "last_status_code": status_code,
                    "due_at": next_at, "next_attempt_at": next_at,
                },
                "$unset": {"claim": ""},
            }  # fmt: skip
            status = PENDING
        change["$inc"] = {"attempts": 1}
        await self.deliveries.update_one({"_id": doc["_id"], "claim": doc["claim"]}, change)
        return status

    async def abandon(self, doc: Document, error: str) -> None:
        """End a claimed delivery as FAILED without an attempt (its endpoint was deleted)."""
        await self.deliveries.update_one(
            {"_id": doc["_id"], "claim": doc["claim"]},
            {
                "$set": {"status": FAILED, "last_error": error},
                "$unset": {"due_at": "", "claim": ""},
            },
        )

    async def list_deliveries(
        self,
        partner_id: str,
        *,
        endpoint_id: str = "",
        status: str = "",
        event_ids: list[str] | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> list[Document]:
        """A partner's deliveries, oldest first, after a (created_at, _id) page mark."""
        query: Document = {"partner": partner_id}
        if endpoint_id:
            query["endpoint_id"] = endpoint_id
        if status:
            query["status"] = status
        if event_ids:
            query["event_id"] = {"$in": event_ids}
        if after is not None:
            query["$or"] = [
                {"created_at": {"$gt": after[0]}},
                {"created_at": after[0], "_id": {"$gt": after[1]}},
            ]
        cursor = (
            self.deliveries.find(query, {"body": 0})
            .sort([("created_at", ASCENDING), ("_id", ASCENDING)])
            .limit(limit)
        )
        return [doc async for doc in cursor]

    async def replay(
        self,
        partner_id: str,
        *,
        endpoint_id: str = "",
        event_ids: list[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        max_age_s: float,
    ) -> int:
        """Queue a partner's deliveries again (not those being attempted right now)."""
        now = utcnow()
        query: Document = {"partner": partner_id, "status": {"$in": [PENDING, SUCCEEDED, FAILED]}}
        if endpoint_id:
            query["endpoint_id"] = endpoint_id
        if event_ids:
            query["event_id"] = {"$in": event_ids}
        else:
            window: Document = {}
            if start is not None:
                window["$gte"] = start
            if end is not None:
                window["$lt"] = end
            if window:
                query["event_time"] = window
        result = await self.deliveries.update_many(
            query,
            {
                "$set": {
                    "status": PENDING, "due_at": now, "next_attempt_at": now,
                    "expires_at": now + timedelta(seconds=max_age_s),
                },
                "$inc": {"replays": 1},
            },
        )  # fmt: skip
        return int(result.modified_count)
