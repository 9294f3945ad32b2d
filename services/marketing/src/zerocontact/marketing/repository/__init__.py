"""Marketing's MongoDB repository: one :class:`Repository` over the service's collections,
its reads and writes grouped by room (campaigns, parties, studios). Documents are shaped
here; the handlers see entities and plain values."""

from __future__ import annotations

from zerocontact.marketing.repository.campaigns import (
    CampaignStore,
    DueCampaign,
    campaign_of,
    member_id,
)
from zerocontact.marketing.repository.parties import PartyStore, payee_link_id, product_of
from zerocontact.marketing.repository.store import (
    CAMPAIGNS,
    CONTACT_LOG,
    DELIVERIES,
    IDEMPOTENCY,
    INDEXES,
    LIVE,
    MEMBERS,
    OUTBOX_COLLECTIONS,
    PAYEE_LINKS,
    PREFERENCES,
    PRODUCTS,
    PROFILES,
    REMINDERS,
    SEGMENTS,
    SESSIONS,
    STUDIOS,
    SUPPRESSIONS,
    WITHOUT_OUTBOX,
    ConcurrentUpdate,
)
from zerocontact.marketing.repository.studios import StudioStore


class Repository(CampaignStore, PartyStore, StudioStore):
    """Every collection of the service and every read and write of it."""


__all__ = [
    "CAMPAIGNS",
    "CONTACT_LOG",
    "DELIVERIES",
    "IDEMPOTENCY",
    "INDEXES",
    "LIVE",
    "MEMBERS",
    "OUTBOX_COLLECTIONS",
    "PAYEE_LINKS",
    "PREFERENCES",
    "PRODUCTS",
    "PROFILES",
    "REMINDERS",
    "SEGMENTS",
    "SESSIONS",
    "STUDIOS",
    "SUPPRESSIONS",
    "WITHOUT_OUTBOX",
    "ConcurrentUpdate",
    "DueCampaign",
    "Repository",
    "campaign_of",
    "member_id",
    "payee_link_id",
    "product_of",
]
