"""Catalog, segments and parties: products, segment rules, consent and preferences, risk
tolerance, payee links, and what the API shows of a party."""

from __future__ import annotations

from datetime import datetime

from zerocontact.marketing import events, profiles
from zerocontact.marketing.book import Book
from zerocontact.marketing.repository import PREFERENCES, Repository, payee_link_id
from zerocontact.platform.errors import NotFound
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay


async def put_product(repo: Repository, doc: Document) -> None:
    """Add or replace a catalog product."""
    await repo.put_product(doc)


async def list_products(repo: Repository) -> list[Document]:
    """The marketing catalog."""
    return await repo.all_products()


async def put_segment(repo: Repository, book: Book, doc: Document) -> None:
    """Define or change a segment's rule; this process's book reloads at once."""
    await repo.put_segment(doc)
    book.invalidate()


async def set_preferences(
    repo: Repository,
    *,
    relay: OutboxRelay,
    topic: str,
    party_id: str,
    prefs: Document,
    now: datetime,
) -> None:
    """Store a party's consent and preferences with their event."""
    await repo.set_preferences(
        party_id,
        fields={**prefs, "changed_at": now},
        events=[
            events.preferences_changed(
                topic,
                party_id,
                consented=prefs["consented"],
                do_not_contact=prefs["do_not_contact"],
                quiet_start=prefs["quiet_start"],
                quiet_end=prefs["quiet_end"],
                time_zone=prefs["time_zone"],
                at=now,
            )
        ],
    )
    relay.nudge(PREFERENCES, party_id)


async def assess_risk_tolerance(
    repo: Repository, *, relay: OutboxRelay, topic: str, party_id: str, grade: int, now: datetime
) -> None:
    """Record a questionnaire's grade; the profile takes it from the event."""
    await repo.set_preferences(
        party_id,
        fields={"risk_grade": grade, "risk_assessed_at": now},
        events=[events.risk_tolerance_assessed(topic, party_id, grade, now)],
    )
    relay.nudge(PREFERENCES, party_id)


async def profile_view(
    repo: Repository, party_id: str, *, now: datetime, time_zone: str
) -> Document:
    """The 360° profile with the party's preferences (``NotFound`` before any event)."""
    doc = await repo.profile(party_id)
    if doc is None:
        raise NotFound(f"no profile for party {party_id} yet")
    prefs = await repo.preferences_of(party_id)
    return profiles.view(doc, prefs, now=now, time_zone=time_zone)


async def suppressions_of(repo: Repository, party_id: str) -> list[Document]:
    """Contacts not made to a party, and why."""
    return await repo.suppressions_of(party_id)


async def link_payee(
    repo: Repository, *, employer_id: str, card_masked: str, party_id: str
) -> None:
    """Link an employer's payee (masked card, as in SalaryPaid) to a party."""
    await repo.put_payee_link(payee_link_id(employer_id, card_masked), party_id)
