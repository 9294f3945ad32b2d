"""The wallet's money: incoming transfers, the day's sweep, money-market yield."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body

from zerocontact.payroll import handlers
from zerocontact.payroll.api.deps import Caller, Ctx, IdempotencyKey, PartyId
from zerocontact.payroll.api.views import BusinessDay, TopUpRequest
from zerocontact.platform.money import Money

router = APIRouter(prefix="/v1", tags=["payroll"])


@router.post("/employers/{employer_id}/top-ups")
async def top_up(
    employer_id: PartyId, body: TopUpRequest, key: IdempotencyKey, who: Caller, ctx: Ctx
) -> dict[str, Any]:
    """Credit an incoming transfer to the wallet (idempotent by the rail's reference)."""
    await handlers.claim(ctx, f"topup:{employer_id}", key, body.model_dump(mode="json"))
    return await handlers.top_up(
        ctx,
        employer_id=employer_id,
        rail_reference=body.rail_reference,
        amount=Money.of(body.amount, ctx.currency),
        principal=who,
    )


@router.post("/employers/{employer_id}/sweeps")
async def sweep(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    ctx: Ctx,
    body: Annotated[BusinessDay, Body()],
) -> dict[str, Any]:
    """Run the day's sweep now (also run by the scheduler)."""
    await handlers.acting_employer(ctx, employer_id, who)
    await handlers.claim(ctx, f"sweep:{employer_id}", key, body.model_dump(mode="json"))
    moved = await handlers.run_sweep(ctx, employer_id=employer_id, business_day=body.business_day)
    return {"swept_minor": moved.minor_units, **await handlers.balances(ctx, employer_id)}


@router.post("/employers/{employer_id}/yield-accruals")
async def accrue(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    ctx: Ctx,
    body: Annotated[BusinessDay, Body()],
) -> dict[str, Any]:
    """Accrue one day's money-market yield (also run by the scheduler)."""
    await handlers.acting_employer(ctx, employer_id, who)
    await handlers.claim(ctx, f"yield:{employer_id}", key, body.model_dump(mode="json"))
    amount = await handlers.accrue_yield(
        ctx, employer_id=employer_id, business_day=body.business_day
    )
    return {"accrued_minor": amount.minor_units, **await handlers.balances(ctx, employer_id)}
