"""The catalog, segments, parties (profiles, preferences, payee links, loan reminders), the
contacts made or suppressed, and the live signals."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime

from zerocontact.marketing.domain.catalog import Product, ProductKind
from zerocontact.marketing.repository.store import WITHOUT_OUTBOX, Store
from zerocontact.platform.idempotency import apply_once
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxEvent, insert_aggregate


def product_of(doc: Document) -> Product:
    """A catalog document (or a campaign's snapshot of one) as a :class:`Product`."""
    return Product(
        id=doc["_id"],
        kind=ProductKind(doc["kind"]),
        name=doc["name"],
        risk_level=int(doc["risk_level"]),
        annual_rate=doc.get("annual_rate", ""),
    )


def payee_link_id(employer_id: str, card_masked: str) -> str:
    """The ``payee_links`` key: employer and masked card (payroll's events carry no party)."""
    return f"{employer_id}|{card_masked}"


class PartyStore(Store):
    """Reads and writes of everything about parties and what is offered to them."""

    async def product(self, product_id: str) -> Document | None:
        """A catalog product, or None."""
        return await self.products.find_one({"_id": product_id})

    async def put_product(self, doc: Document) -> None:
        """Add or replace a catalog product."""
        await self.products.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def all_products(self) -> list[Document]:
        """The catalog."""
        return [d async for d in self.products.find({})]

    async def segment_exists(self, segment_id: str) -> bool:
        """Whether the segment is defined."""
        return await self.segments.find_one({"_id": segment_id}) is not None

    async def put_segment(self, doc: Document) -> None:
        """Define or replace a segment."""
        await self.segments.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def segment_rules(self) -> AsyncIterator[tuple[str, object]]:
        """Every segment's id and stored rule."""
        async for seg in self.segments.find({}, {"rule": 1}):
            yield seg["_id"], seg["rule"]

    async def set_preferences(
        self, party_id: str, *, fields: Document, events: Sequence[OutboxEvent]
    ) -> None:
        """Create or change a party's preferences (or risk grade) with its events."""
        await self.upsert_with_events(self.preferences, party_id, set_fields=fields, events=events)

    async def preferences_of(self, party_id: str) -> Document | None:
        """A party's stored preferences, or None."""
        return await self.preferences.find_one({"_id": party_id})

    async def profile(self, party_id: str) -> Document | None:
        """A party's profile without bookkeeping, or None."""
        return await self.profiles.find_one({"_id": party_id}, {"_applied": 0, "_outbox": 0})

    async def apply_to_profile(self, party_id: str, event_id: str, update: Document) -> bool:
        """Apply a consumed event's ``update`` to a party's profile (created if need be)
        unless that event was applied before; True if applied now."""
        return await apply_once(self.profiles, doc_id=party_id, event_id=event_id, update=update)

    async def change_membership(self, party_id: str, *, seg_version: int, update: Document) -> bool:
        """Apply a segment-membership ``update`` to a profile still at ``seg_version`` (0: never
        changed); False if another change came first."""
        guard: Document = {"_id": party_id}
        guard["seg_version"] = seg_version if seg_version else {"$exists": False}
        result = await self.profiles.update_one(guard, update)
        return result.matched_count == 1

    async def raw_profile(self, party_id: str) -> Document | None:
        """A party's whole profile document, or None."""
        return await self.profiles.find_one({"_id": party_id})

    async def suppressions_of(self, party_id: str) -> list[Document]:
        """Contacts not made to a party."""
        cursor = self.suppressions.find({"party_id": party_id}, {**WITHOUT_OUTBOX, "version": 0})
        return [d async for d in cursor]

    async def insert_suppression(self, doc: Document, events: Sequence[OutboxEvent]) -> None:
        """A contact not made, with its event."""
        await insert_aggregate(self.suppressions, doc, events)

    async def insert_delivery(self, doc: Document, events: Sequence[OutboxEvent]) -> None:
        """A contact made, with its events."""
        await insert_aggregate(self.deliveries, doc, events)

    async def contact_log_of(self, party_id: str) -> Document | None:
        """A party's contact counts per channel and day (with its version), or None."""
        return await self.contact_log.find_one({"_id": party_id})

    async def put_payee_link(self, link_id: str, party_id: str) -> None:
        """Link an employer's payee to a party."""
        await self.payee_links.replace_one(
            {"_id": link_id}, {"_id": link_id, "party_id": party_id}, upsert=True
        )

    async def linked_party(self, link_id: str) -> str | None:
        """The party an employer's payee is linked to, or None."""
        link = await self.payee_links.find_one({"_id": link_id})
        return None if link is None else str(link["party_id"])

    async def add_reminder(self, application_id: str, party_id: str, approved_at: datetime) -> None:
        """Keep a due loan reminder for an approved application (once)."""
        await self.reminders.update_one(
            {"_id": application_id},
            {
                "$setOnInsert": {
                    "party_id": party_id,
                    "approved_at": approved_at,
                    "due_at": approved_at,
                    "fired": {},
                }
            },
            upsert=True,
        )

    async def drop_reminder(self, application_id: str) -> Document | None:
        """Drop an application's reminder (its offer was accepted); the reminder dropped."""
        reminder = await self.reminders.find_one({"_id": application_id})
        await self.reminders.delete_one({"_id": application_id})
        return reminder

    async def mark_reminder_fired(self, reminder_id: str, campaign_id: str, now: datetime) -> bool:
        """Mark a reminder as sent for a campaign unless it was already (at most once)."""
        result = await self.reminders.update_one(
            {"_id": reminder_id, f"fired.{campaign_id}": {"$exists": False}},
            {"$set": {f"fired.{campaign_id}": now}},
        )
        return result.modified_count == 1

    async def live_signal(self, signal_id: str) -> Document | None:
        """A live signal (``funnel:<campaign>``, ``viewers:<session>``), or None."""
        return await self.live.find_one({"_id": signal_id})

    async def set_live(self, signal_id: str, fields: Document) -> None:
        """Store the latest value of a live signal."""
        await self.live.update_one({"_id": signal_id}, {"$set": fields}, upsert=True)
