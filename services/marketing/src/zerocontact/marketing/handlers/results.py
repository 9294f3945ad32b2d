"""What campaigns achieve: members' opens, clicks and conversions, the evaluation against
the holdout, and the live funnel from the signals."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

from zerocontact.marketing import events
from zerocontact.marketing.domain.campaigns import CampaignStateError
from zerocontact.marketing.domain.evaluation import (
    NotEnoughData,
    cost_per_conversion,
    two_proportion_z_test,
)
from zerocontact.marketing.handlers.campaigns import load
from zerocontact.marketing.repository import MEMBERS, Repository, member_id
from zerocontact.platform.errors import NotFound
from zerocontact.platform.mongo import Document
from zerocontact.platform.outbox import OutboxEvent, OutboxRelay


async def record_interaction(
    repo: Repository,
    campaign_id: str,
    *,
    relay: OutboxRelay,
    topic: str,
    party_id: str,
    stage: str,
    now: datetime,
) -> Document:
    """An open, click or conversion reported for a campaign member."""
    member = await repo.member(campaign_id, party_id)
    if member is None:
        raise NotFound(f"party {party_id} is not in campaign {campaign_id}")
    if stage in (member.get("stages") or {}):
        return member  # a retry: first report wins
    campaign = await load(repo, campaign_id)
    evts: list[OutboxEvent] = []
    if stage == "converted":
        evts.append(
            events.offer_converted(
                topic,
                party_id=party_id,
                campaign_id=campaign_id,
                product_id=campaign.product.id,
                holdout=member["arm"] == "holdout",
                at=now,
            )
        )
    elif member["arm"] == "treatment":
        evts.append(
            events.offer_interaction(
                topic,
                delivery_id=member.get("last_delivery_id", ""),
                party_id=party_id,
                campaign_id=campaign_id,
                channel=campaign.variants[0].channel,
                stage=stage,
                at=now,
            )
        )
    else:
        raise CampaignStateError(f"party {party_id} is in the holdout: nothing was sent to open")
    await repo.record_stage(
        campaign_id,
        party_id,
        version=int(member.get("version", 1)),
        stage=stage,
        at=now,
        events=evts,
    )
    relay.nudge(MEMBERS, member_id(campaign_id, party_id))
    return await repo.member_view(campaign_id, party_id)


async def evaluate(repo: Repository, campaign_id: str, *, confidence: float) -> Document:
    """Funnel, uplift against the holdout with its z-test and CI, cost per conversion."""
    campaign = await load(repo, campaign_id)
    funnel = {"sent": 0, "delivered": 0, "failed": 0, "opened": 0, "clicked": 0, "converted": 0}
    arms = {"treatment": [0, 0], "holdout": [0, 0]}
    async for arm, stages in repo.arms_of(campaign_id):
        arms[arm][0] += 1
        if "converted" in stages:
            arms[arm][1] += 1
        if arm == "treatment":
            for stage in funnel:
                if stage in stages:
                    funnel[stage] += 1
    suppressed: dict[str, int] = {}
    async for reason in repo.suppression_reasons(campaign_id):
        suppressed[reason] = suppressed.get(reason, 0) + 1
    cost = funnel["sent"] * campaign.cost_per_contact_minor
    result: Document = {
        "campaign_id": campaign_id,
        "funnel": funnel,
        "suppressed": suppressed,
        "cost_minor": cost,
        "budget_minor": campaign.budget_minor,
        "spent_minor": campaign.spent_minor,
        "cost_per_conversion_minor": cost_per_conversion(cost, arms["treatment"][1]),
    }
    try:
        uplift = two_proportion_z_test(
            arms["treatment"][0],
            arms["treatment"][1],
            arms["holdout"][0],
            arms["holdout"][1],
            confidence=confidence,
        )
        result["uplift"] = asdict(uplift)
    except NotEnoughData as exc:
        result["uplift"] = None
        result["uplift_unavailable"] = str(exc)
    return result


async def live_funnel(repo: Repository, campaign_id: str) -> Document:
    """The real-time funnel the signals last reported for a campaign."""
    doc = await repo.live_signal(f"funnel:{campaign_id}")
    if doc is None:
        raise NotFound(f"no live funnel for campaign {campaign_id} yet")
    return doc
