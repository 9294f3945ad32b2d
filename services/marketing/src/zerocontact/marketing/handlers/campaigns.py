"""Campaign commands: plan and design, compliance review, approval (four eyes), and runs to
the audience segment (by hand or at ``start_at``). The :class:`Campaign` entity decides
whether a step is allowed; these functions load it, store its answer and its events."""

from __future__ import annotations

import asyncio
from datetime import datetime

from zerocontact.marketing import events
from zerocontact.marketing.book import Book
from zerocontact.marketing.domain.campaigns import (
    RUNNING,
    Campaign,
    CampaignStatus,
    UnknownReference,
    changed_meanwhile,
    finding_view,
)
from zerocontact.marketing.outreach import Outreach
from zerocontact.marketing.repository import CAMPAIGNS, ConcurrentUpdate, Repository, campaign_of
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ids import new_id
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxRelay


async def load(repo: Repository, campaign_id: str) -> Campaign:
    """The campaign (``NotFound`` if there is none)."""
    campaign = await repo.campaign(campaign_id)
    if campaign is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return campaign


async def get_campaign(repo: Repository, campaign_id: str) -> Document:
    """One campaign as stored (plan, design, status, findings, runs)."""
    doc = await repo.campaign_document(campaign_id)
    if doc is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    return doc


async def create_campaign(
    repo: Repository, *, plan: Document, author: str, now: datetime
) -> Document:
    """A draft campaign: plan and design, the product snapshotted from the catalog."""
    product = await repo.product(plan["product_id"])
    if product is None:
        raise UnknownReference(
            f"product {plan['product_id']} is not in the catalog", field="product_id"
        )
    if plan.get("segment_id") and not await repo.segment_exists(plan["segment_id"]):
        raise UnknownReference(f"segment {plan['segment_id']} does not exist", field="segment_id")
    doc = {
        "_id": new_id(),
        **plan,
        "author": author,
        "product": product,
        "status": CampaignStatus.DRAFT.value,
        "findings": [],
        "approver": None,
        "created_at": now,
        "spent_minor": 0,
    }
    await repo.insert_campaign(doc)
    return await get_campaign(repo, doc["_id"])


async def redesign(repo: Repository, campaign_id: str, *, variants: list[Document]) -> Document:
    """Replace the content variants; the campaign goes back to draft (review again)."""
    campaign = await load(repo, campaign_id)
    status = campaign.check_redesign()
    await repo.update_campaign(
        campaign_id,
        version=campaign.version,
        changes={"variants": variants, "status": status.value, "findings": [], "approver": None},
    )
    return await get_campaign(repo, campaign_id)


async def review(
    repo: Repository,
    campaign_id: str,
    *,
    relay: OutboxRelay,
    topic: str,
    now: datetime,
    operator: str = "",
) -> Document:
    """Run the compliance checker: findings block the campaign, none await an approver.
    ``operator`` (who asked for the review) is kept on the campaign as ``reviewed_by``."""
    campaign = await load(repo, campaign_id)
    status, findings = campaign.review()
    await repo.update_campaign(
        campaign_id,
        version=campaign.version,
        changes={
            "status": status.value,
            "findings": [finding_view(f) for f in findings],
            "reviewed_at": now,
            "reviewed_by": operator,
        },
        events=[events.campaign_reviewed(topic, campaign_id, status.value, findings, "", now)],
    )
    relay.nudge(CAMPAIGNS, campaign_id)
    return await get_campaign(repo, campaign_id)


async def approve(
    repo: Repository,
    campaign_id: str,
    *,
    relay: OutboxRelay,
    book: Book,
    topic: str,
    approver: str,
    now: datetime,
) -> Document:
    """Record the approver (not the author); only a reviewed campaign without findings."""
    doc = await get_campaign(repo, campaign_id)
    campaign = campaign_of(doc)
    if campaign.is_approved_by(approver):
        return doc  # a retry: the campaign as just read, not read again
    status = campaign.check_approve(approver)
    try:
        await repo.update_campaign(
            campaign_id,
            version=campaign.version,
            changes={"status": status.value, "approver": approver, "approved_at": now},
            events=[events.campaign_reviewed(topic, campaign_id, status.value, [], approver, now)],
        )
    except ConcurrentUpdate as exc:
        raise changed_meanwhile(campaign_id) from exc
    relay.nudge(CAMPAIGNS, campaign_id)
    book.invalidate()
    return await get_campaign(repo, campaign_id)


def _new_run(**extra: str) -> Document:
    return {"run_id": new_id(), "state": RUNNING, "outcomes": {}, **extra}


async def start_execution(repo: Repository, campaign_id: str) -> Document:
    """Check that the campaign may run now and mark a run as started; the run itself is
    :func:`execute` (in the background: an audience may be large)."""
    campaign = await load(repo, campaign_id)
    campaign.check_start_run()
    run = _new_run()
    if not await repo.start_run(campaign_id, version=campaign.version, run=run):
        raise changed_meanwhile(campaign_id)
    return {"campaign_id": campaign_id, **run}


async def claim_due_schedules(repo: Repository, now: datetime) -> list[str]:
    """Approved campaigns with an audience whose ``start_at`` has come, each claimed for its
    scheduled run exactly once; the ids claimed (their runs are :func:`execute`).

    The claim is a compare-and-set on the campaign (version, still approved, not yet
    scheduled, not running): two schedulers (replicas) or a scheduler racing a manual
    ``execute`` start one run between them, never two. A campaign running by hand when its
    time comes is claimed at a later tick, once that run is done.
    """
    claimed: list[str] = []
    async for due in repo.due_campaigns(now):
        if not due.segment_id:
            continue  # trigger-only: start_at has nothing to run
        if await repo.claim_scheduled_run(due, run=_new_run(cause="scheduled"), now=now):
            claimed.append(due.id)
    return claimed


async def execute(
    repo: Repository, campaign_id: str, *, outreach: Outreach, concurrency: int = 16
) -> dict[str, int]:
    """Offer the campaign to every member of its segment (a scheduled run); outcome counts.

    Offers run ``concurrency`` at a time so the channel's latency overlaps; each party's
    offer is still one compare-and-set on its contact log.
    """
    campaign = await load(repo, campaign_id)
    outcomes: dict[str, int] = {}
    semaphore = asyncio.Semaphore(concurrency)

    async def one(profile: Document) -> None:
        async with semaphore:
            outcome = await outreach.offer(campaign, profile["_id"], profile, cause="scheduled")
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    pending: set[asyncio.Task[None]] = set()
    async for profile in repo.segment_members(str(campaign.segment_id)):
        task = asyncio.create_task(one(profile))
        pending.add(task)
        task.add_done_callback(pending.discard)
        if len(pending) >= 4 * concurrency:
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    if pending:
        await asyncio.gather(*pending)
    await repo.finish_run(campaign_id, outcomes)
    return outcomes
