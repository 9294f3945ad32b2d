"""The wallet's money: top-ups, balances, redemptions ahead of payrolls, the sweep and yield."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from zerocontact.payroll import events
from zerocontact.payroll.domain import accounts, sweep
from zerocontact.payroll.domain.errors import TopUpConflict
from zerocontact.payroll.handlers.context import Context
from zerocontact.payroll.handlers.employers import acting_employer, employer
from zerocontact.payroll.rail import IncomingMismatch
from zerocontact.payroll.repository import TREASURY
from zerocontact.platform.auth import Principal
from zerocontact.platform.ledger import IdempotencyConflict, InsufficientFunds
from zerocontact.platform.money import Money
from zerocontact.platform.outbox import OutboxEvent


async def top_up(
    ctx: Context, *, employer_id: str, rail_reference: str, amount: Money, principal: Principal
) -> dict[str, Any]:
    """Credit the wallet with an incoming transfer, once per rail reference."""
    await acting_employer(ctx, employer_id, principal)
    try:
        await ctx.rail.confirm_incoming(
            rail_reference, beneficiary=accounts.wallet(employer_id), amount=amount
        )
    except IncomingMismatch:
        raise TopUpConflict("this rail reference was used for another transfer") from None
    await ctx.ledger.post(
        f"payroll:topup:{rail_reference}",
        accounts.top_up(employer_id, amount),
        memo=f"incoming transfer {rail_reference}",
    )
    record_id = f"topup:{rail_reference}"
    await _record(
        ctx,
        record_id,
        employer_id,
        "wallet_topped_up",
        events.wallet_topped_up(
            topic=ctx.topic,
            record_id=record_id,
            employer_id=employer_id,
            rail_reference=rail_reference,
            amount=amount,
        ),
    )
    return await balances(ctx, employer_id)


async def _record(
    ctx: Context, record_id: str, employer_id: str, kind: str, event: OutboxEvent
) -> None:
    """A treasury movement's record with its event (written once per movement id)."""
    if await ctx.repo.add_treasury_record(
        record_id, employer_id=employer_id, kind=kind, events=[event]
    ):
        ctx.relay.nudge(TREASURY, record_id)


async def balances(ctx: Context, employer_id: str) -> dict[str, Any]:
    """Wallet and money-market balances (authoritative: the ledger)."""
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    mmf = await ctx.ledger.balance(accounts.money_market(employer_id))
    return {
        "employer_id": employer_id,
        "currency": wallet.currency,
        "wallet_minor": wallet.minor_units,
        "money_market_minor": mmf.minor_units,
    }


async def fund(ctx: Context, *, employer_id: str, need: Money, purpose: str) -> Money:
    """Redeem from the money-market holding what the wallet lacks for ``need`` (once per purpose)."""
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    holding = await ctx.ledger.balance(accounts.money_market(employer_id))
    amount = sweep.redemption_needed(need, wallet=wallet, holding=holding)
    if amount.is_zero():
        return amount
    try:
        await ctx.ledger.post(
            f"payroll:redeem:{purpose}",
            accounts.redeem(employer_id, amount),
            memo=f"redemption for {purpose}",
        )
    except IdempotencyConflict:
        return Money(amount.currency, 0)  # redeemed for this purpose already
    record_id = f"redeem:{purpose}"
    await _record(
        ctx,
        record_id,
        employer_id,
        "funds_redeemed",
        events.funds_redeemed(
            topic=ctx.topic,
            record_id=record_id,
            employer_id=employer_id,
            amount=amount,
            purpose=purpose,
        ),
    )
    return amount


async def committed_for_batches(ctx: Context, employer_id: str, *, until: datetime) -> Money:
    """What approved-but-unreserved or submitted scheduled batches will need before ``until``."""
    total = 0
    for batch in await ctx.repo.submitted_batches(employer_id):
        if batch.scheduled_for is not None and batch.scheduled_for <= until:
            total += batch.control_sum_minor
    return Money(ctx.currency, total)


async def run_sweep(
    ctx: Context, *, employer_id: str, business_day: date, now: datetime | None = None
) -> Money:
    """Move the wallet's idle money above the threshold into the money-market product.

    Once per employer and business day; payrolls scheduled within the redemption lead time
    are kept in the wallet.
    """
    owner = await employer(ctx, employer_id)
    if owner.sweep_threshold_minor is None:
        return Money(ctx.currency, 0)
    moment = now or datetime.now(UTC)
    wallet = await ctx.ledger.balance(accounts.wallet(employer_id))
    amount = sweep.sweep_amount(
        wallet,
        threshold=Money(ctx.currency, owner.sweep_threshold_minor),
        committed=await committed_for_batches(
            ctx, employer_id, until=moment + ctx.redeem_lead_time
        ),
    )
    if amount.is_zero():
        return amount
    day = business_day.isoformat()
    try:
        await ctx.ledger.post(
            f"payroll:sweep:{employer_id}:{day}",
            accounts.sweep(employer_id, amount),
            memo=f"sweep {day}",
        )
    except IdempotencyConflict:
        return Money(ctx.currency, 0)  # swept today already
    except InsufficientFunds:
        return Money(ctx.currency, 0)  # the wallet moved meanwhile; tomorrow's sweep catches up
    record_id = f"sweep:{employer_id}:{day}"
    await _record(
        ctx,
        record_id,
        employer_id,
        "funds_swept",
        events.funds_swept(
            topic=ctx.topic,
            record_id=record_id,
            employer_id=employer_id,
            amount=amount,
            business_day=day,
            at=moment,
        ),
    )
    return amount


async def accrue_yield(ctx: Context, *, employer_id: str, business_day: date) -> Money:
    """Credit one day's yield on the money-market holding (once per day)."""
    holding = await ctx.ledger.balance(accounts.money_market(employer_id))
    amount = sweep.daily_yield(holding, annual_rate=ctx.mmf_annual_rate)
    if amount.is_zero():
        return amount
    try:
        await ctx.ledger.post(
            f"payroll:yield:{employer_id}:{business_day.isoformat()}",
            accounts.accrue_yield(employer_id, amount),
            memo=f"yield {business_day}",
        )
    except IdempotencyConflict:
        return Money(ctx.currency, 0)
    return amount
