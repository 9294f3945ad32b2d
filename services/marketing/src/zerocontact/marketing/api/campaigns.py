"""Routes of campaigns: plan and design, compliance review, approval (four eyes), runs,
members' interactions, evaluation and the live funnel."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from pydantic import Field, field_validator

from zerocontact.marketing import handlers
from zerocontact.marketing.api.deps import (
    Body,
    ChannelName,
    Id,
    Operator,
    back_office_router,
    deps_of,
    once,
    public,
)
from zerocontact.marketing.domain.triggers import Trigger
from zerocontact.platform.deps import IdempotencyKey

router = back_office_router()


class VariantIn(Body):
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,32}$")
    channel: ChannelName
    title: str = Field(min_length=1, max_length=60)
    body: str = Field(min_length=1, max_length=500)


class CampaignIn(Body):
    name: str = Field(min_length=1, max_length=100)
    goal: str = Field(min_length=1, max_length=200)
    budget_minor: int = Field(ge=0)
    cost_per_contact_minor: int = Field(default=0, ge=0)
    product_id: str
    segment_id: str | None = None
    start_at: datetime | None = None
    holdout_percent: float = Field(ge=0, le=50)
    variants: list[VariantIn] = Field(min_length=1, max_length=8)
    trigger: Trigger | None = None

    @field_validator("variants")
    @classmethod
    def _distinct_ids(cls, value: list[VariantIn]) -> list[VariantIn]:
        if len({v.id for v in value}) != len(value):
            raise ValueError("variant ids must be distinct")
        return value


class DesignIn(Body):
    variants: list[VariantIn] = Field(min_length=1, max_length=8)


class InteractionIn(Body):
    party_id: str = Field(min_length=1, max_length=64)
    stage: Literal["opened", "clicked", "converted"]


@router.post("/campaigns", status_code=201)
async def create_campaign(
    body: CampaignIn, key: IdempotencyKey, operator: Operator, request: Request
) -> Any:
    """Plan and design a campaign (draft); its author is the calling operator."""
    deps = deps_of(request)
    if body.trigger is None and body.segment_id is None:
        raise handlers.UnknownReference(
            "a campaign needs an audience segment or a trigger", field="segment_id"
        )

    async def compute() -> Any:
        plan = body.model_dump(mode="json")
        plan["variants"] = [v.model_dump() for v in body.variants]
        plan["start_at"] = body.start_at
        created = await handlers.create_campaign(
            deps.repo, plan=plan, author=operator, now=deps.clock()
        )
        return public(created)

    return await once(request, "campaign", key, body.model_dump(mode="json"), compute)


@router.get("/campaigns/{campaign_id}")
async def get_campaign(campaign_id: Id, request: Request) -> Any:
    """One campaign with its status and findings."""
    return public(await handlers.get_campaign(deps_of(request).repo, campaign_id))


@router.put("/campaigns/{campaign_id}/design")
async def put_design(campaign_id: Id, body: DesignIn, key: IdempotencyKey, request: Request) -> Any:
    """Replace the content variants (back to draft)."""

    async def compute() -> Any:
        return public(
            await handlers.redesign(
                deps_of(request).repo,
                campaign_id,
                variants=[v.model_dump() for v in body.variants],
            )
        )

    return await once(request, f"design:{campaign_id}", key, body.model_dump(), compute)


@router.post("/campaigns/{campaign_id}/review")
async def review(campaign_id: Id, key: IdempotencyKey, operator: Operator, request: Request) -> Any:
    """Run the compliance checker; findings block the campaign (``reviewed_by`` is the
    caller)."""
    deps = deps_of(request)

    async def compute() -> Any:
        return public(
            await handlers.review(
                deps.repo,
                campaign_id,
                relay=deps.relay,
                topic=deps.settings.topic,
                now=deps.clock(),
                operator=operator,
            )
        )

    return await once(request, f"review:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/approve")
async def approve(
    campaign_id: Id, key: IdempotencyKey, operator: Operator, request: Request
) -> Any:
    """Approve as the calling operator (never the author: 403 ``approver_is_author``);
    refused while findings remain."""
    deps = deps_of(request)

    async def compute() -> Any:
        return public(
            await handlers.approve(
                deps.repo,
                campaign_id,
                relay=deps.relay,
                book=deps.book,
                topic=deps.settings.topic,
                approver=operator,
                now=deps.clock(),
            )
        )

    return await once(request, f"approve:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/execute", status_code=202)
async def execute(campaign_id: Id, key: IdempotencyKey, request: Request) -> Any:
    """Start offering the campaign to its segment now; poll the campaign's ``run``."""
    deps = deps_of(request)

    async def compute() -> Any:
        run = await handlers.start_execution(deps.repo, campaign_id)
        deps.background(handlers.execute(deps.repo, campaign_id, outreach=deps.outreach))
        return run

    return await once(request, f"execute:{campaign_id}", key, {}, compute)


@router.post("/campaigns/{campaign_id}/interactions")
async def interaction(
    campaign_id: Id, body: InteractionIn, key: IdempotencyKey, request: Request
) -> Any:
    """Report an open, click or conversion of a campaign member."""
    deps = deps_of(request)

    async def compute() -> Any:
        doc = await handlers.record_interaction(
            deps.repo,
            campaign_id,
            relay=deps.relay,
            topic=deps.settings.topic,
            party_id=body.party_id,
            stage=body.stage,
            now=deps.clock(),
        )
        return public(doc)

    return await once(request, f"interaction:{campaign_id}", key, body.model_dump(), compute)


@router.get("/campaigns/{campaign_id}/evaluation")
async def evaluation(
    campaign_id: Id, request: Request, confidence: Annotated[float, Query(gt=0.5, lt=1)] = 0.95
) -> Any:
    """Funnel, uplift vs holdout (two-proportion z-test, CI), cost per conversion."""
    return await handlers.evaluate(deps_of(request).repo, campaign_id, confidence=confidence)


@router.get("/campaigns/{campaign_id}/live-funnel")
async def live_funnel(campaign_id: Id, request: Request) -> Any:
    """The real-time funnel from signals.engagement.v1."""
    return public(await handlers.live_funnel(deps_of(request).repo, campaign_id))
