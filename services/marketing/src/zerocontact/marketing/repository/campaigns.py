"""Campaigns and their members: typed to and from their documents here.

A campaign document holds the plan and design as created (``name``, ``goal``, budget,
``variants``, ``trigger``, the ``product`` snapshot), the review state (``status``,
``findings``, ``author``, ``approver``) and its runs (``run``, ``scheduled_run``, ``runs``,
``spent_minor``). Members are keyed ``campaign:party``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import NamedTuple

from zerocontact.marketing.domain.campaigns import DONE, RUNNING, Campaign, CampaignStatus
from zerocontact.marketing.repository.parties import product_of
from zerocontact.marketing.repository.store import WITHOUT_OUTBOX, Store
from zerocontact.platform.compliance import Finding, Variant
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxEvent, insert_aggregate, update_aggregate


def campaign_of(doc: Document) -> Campaign:
    """A campaign document as the :class:`Campaign` its state machine decides on."""
    return Campaign(
        id=doc["_id"],
        status=CampaignStatus(doc["status"]),
        author=doc["author"],
        version=int(doc["version"]),
        product=product_of(doc["product"]),
        variants=tuple(
            Variant(v["id"], v["channel"], v["title"], v["body"]) for v in doc["variants"]
        ),
        approver=doc.get("approver"),
        findings=tuple(Finding(**f) for f in doc.get("findings") or ()),
        segment_id=doc.get("segment_id"),
        run_state=(doc.get("run") or {}).get("state"),
        budget_minor=doc.get("budget_minor"),
        cost_per_contact_minor=int(doc.get("cost_per_contact_minor", 0)),
        spent_minor=int(doc.get("spent_minor", 0)),
        holdout_percent=float(doc.get("holdout_percent", 0)),
    )


def member_id(campaign_id: str, party_id: str) -> str:
    """The ``campaign_members`` key of a party in a campaign."""
    return f"{campaign_id}:{party_id}"


class DueCampaign(NamedTuple):
    """An approved campaign whose ``start_at`` has come and that was not scheduled yet."""

    id: str
    version: int
    segment_id: str | None


class CampaignStore(Store):
    """Reads and writes of campaigns and their members."""

    async def campaign(self, campaign_id: str) -> Campaign | None:
        """The campaign, or None."""
        doc = await self.campaigns.find_one({"_id": campaign_id}, WITHOUT_OUTBOX)
        return None if doc is None else campaign_of(doc)

    async def campaign_document(self, campaign_id: str) -> Document | None:
        """The stored campaign as shown (without its outbox), or None."""
        return await self.campaigns.find_one({"_id": campaign_id}, WITHOUT_OUTBOX)

    async def insert_campaign(self, doc: Document) -> None:
        """A new campaign (version 1, no events)."""
        await insert_aggregate(self.campaigns, doc, [])

    async def update_campaign(
        self,
        campaign_id: str,
        *,
        version: int,
        changes: Document,
        events: Sequence[OutboxEvent] = (),
    ) -> None:
        """Change the campaign read at ``version`` with its events (``ConcurrentUpdate``
        otherwise)."""
        await update_aggregate(
            self.campaigns, campaign_id, version=version, changes=changes, events=events
        )

    async def start_run(self, campaign_id: str, *, version: int, run: Document) -> bool:
        """Mark ``run`` as the campaign's current run if it is still at ``version``."""
        result = await self.campaigns.update_one(
            {"_id": campaign_id, "version": version},
            {"$set": {"run": run, "version": version + 1}},
        )
        return result.matched_count == 1

    async def due_campaigns(self, now: datetime) -> AsyncIterator[DueCampaign]:
        """Approved campaigns whose ``start_at`` is by ``now`` and not yet scheduled."""
        # The `status` index finds the approved ones; FerretDB filters those in Go.
        cursor = self.campaigns.find(
            {
                "status": CampaignStatus.APPROVED.value,
                "start_at": {"$lte": now},
                "scheduled_run": {"$exists": False},
            },
            {"_id": 1, "version": 1, "segment_id": 1},
        )
        async for doc in cursor:
            yield DueCampaign(doc["_id"], doc["version"], doc.get("segment_id"))

    async def claim_scheduled_run(self, due: DueCampaign, *, run: Document, now: datetime) -> bool:
        """Start ``run`` as the campaign's scheduled run: a compare-and-set (same version,
        still approved, not scheduled yet, not running), so it is claimed once."""
        result = await self.campaigns.update_one(
            {
                "_id": due.id,
                "version": due.version,
                "status": CampaignStatus.APPROVED.value,
                "scheduled_run": {"$exists": False},
                "run.state": {"$ne": RUNNING},
            },
            {
                "$set": {"run": run, "scheduled_run": {"run_id": run["run_id"], "at": now}},
                "$inc": {"version": 1},
            },
        )
        return result.modified_count == 1

    async def finish_run(self, campaign_id: str, outcomes: dict[str, int]) -> None:
        """Record the current run as done with its outcome counts."""
        await self.campaigns.update_one(
            {"_id": campaign_id},
            {"$set": {"run.state": DONE, "run.outcomes": outcomes}, "$inc": {"runs": 1}},
        )

    async def triggered_campaigns(self) -> AsyncIterator[tuple[Campaign, Document]]:
        """Every approved campaign with a trigger, and the trigger as stored (the `status`
        index; never per event)."""
        async for doc in self.campaigns.find(
            {"status": CampaignStatus.APPROVED.value}, {"_outbox": 0}
        ):
            if doc.get("trigger"):
                yield campaign_of(doc), doc["trigger"]

    async def segment_members(self, segment_id: str) -> AsyncIterator[Document]:
        """The profiles in a segment."""
        # A scan: FerretDB filters in Go for anything but _id; a run is a batch job.
        cursor = self.profiles.find({f"segments.{segment_id}": True}, {"_applied": 0, "_outbox": 0})
        async for profile in cursor:
            yield profile

    async def member(self, campaign_id: str, party_id: str) -> Document | None:
        """A party's membership of a campaign (arm, stages), or None."""
        return await self.members.find_one({"_id": member_id(campaign_id, party_id)})

    async def member_view(self, campaign_id: str, party_id: str) -> Document:
        """A membership as shown (without its outbox; empty if gone)."""
        found = await self.members.find_one(
            {"_id": member_id(campaign_id, party_id)}, {"_outbox": 0}
        )
        return found or {}

    async def record_stage(
        self,
        campaign_id: str,
        party_id: str,
        *,
        version: int,
        stage: str,
        at: datetime,
        events: Sequence[OutboxEvent],
    ) -> None:
        """Record a member's first open, click or conversion with its events."""
        await update_aggregate(
            self.members,
            member_id(campaign_id, party_id),
            version=version,
            changes={f"stages.{stage}": at},
            events=events,
        )

    async def assign_member(
        self,
        campaign_id: str,
        party_id: str,
        *,
        arm: str,
        now: datetime,
        sent: Document | None = None,
    ) -> None:
        """Put the party in the campaign's ``arm`` (the first assignment's arm stays) and
        set ``sent``'s fields (a send's stages)."""
        update: Document = {
            "$setOnInsert": {
                "campaign_id": campaign_id,
                "party_id": party_id,
                "arm": arm,
                "assigned_at": now,
                "version": 1,
            }
        }
        if sent:
            update["$set"] = sent
        # One upsert: no read before it.
        await self.members.update_one(
            {"_id": member_id(campaign_id, party_id)}, update, upsert=True
        )

    async def mark_converted(self, campaign_id: str, party_id: str, at: datetime) -> None:
        """Record a conversion of a member seen in another service's event."""
        await self.members.update_one(
            {"_id": member_id(campaign_id, party_id)}, {"$set": {"stages.converted": at}}
        )

    async def arms_of(self, campaign_id: str) -> AsyncIterator[tuple[str, Document]]:
        """Every member of a campaign: (arm, stages reached)."""
        async for m in self.members.find({"campaign_id": campaign_id}, {"arm": 1, "stages": 1}):
            yield m["arm"], m.get("stages") or {}

    async def suppression_reasons(self, campaign_id: str) -> AsyncIterator[str]:
        """The reason of every contact of a campaign that was not made."""
        async for s in self.suppressions.find({"campaign_id": campaign_id}, {"reason": 1}):
            yield s["reason"]
