"""Employers: onboarding, the employer with its balances, authorising HR platforms."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from zerocontact.payroll import handlers
from zerocontact.payroll.api.deps import Caller, Ctx, IdempotencyKey, PartyId
from zerocontact.payroll.api.views import AgentRequest, OnboardRequest, employer_view
from zerocontact.platform.money import Money

router = APIRouter(prefix="/v1", tags=["payroll"])


@router.post("/employers", status_code=201)
async def onboard(
    body: OnboardRequest, key: IdempotencyKey, who: Caller, ctx: Ctx
) -> dict[str, Any]:
    """Onboard a VERIFIED enterprise (its legal representative only): opens its wallet."""
    await handlers.claim(ctx, "onboard", key, body.model_dump(mode="json"))
    employer = await handlers.onboard_employer(
        ctx,
        employer_id=body.employer_id,
        principal=who,
        maker_checker=body.maker_checker,
        sweep_threshold=Money.of(body.sweep_threshold, ctx.currency)
        if body.sweep_threshold is not None
        else None,
    )
    return employer_view(employer, await handlers.balances(ctx, employer.employer_id))


@router.get("/employers/{employer_id}")
async def get_employer(employer_id: PartyId, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """The employer with its wallet and money-market balances."""
    employer = await handlers.acting_employer(ctx, employer_id, who)
    return employer_view(employer, await handlers.balances(ctx, employer_id))


@router.post("/employers/{employer_id}/agents")
async def authorise_agent(
    employer_id: PartyId, body: AgentRequest, key: IdempotencyKey, who: Caller, ctx: Ctx
) -> dict[str, Any]:
    """Authorise an HR platform (a VERIFIED enterprise) to act for this employer."""
    await handlers.claim(ctx, f"agent:{employer_id}", key, body.model_dump(mode="json"))
    employer = await handlers.authorise_agent(
        ctx, employer_id=employer_id, agent_id=body.agent_id, principal=who
    )
    return employer_view(employer, await handlers.balances(ctx, employer_id))
