"""Gig payouts: hold the gross, pay the net through the rail, book the withheld tax."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import UTC, datetime

from zerocontact.payroll import events
from zerocontact.payroll.domain import accounts, aggregates
from zerocontact.payroll.domain.cards import InvalidCard, parse_card
from zerocontact.payroll.domain.errors import BatchRefused, FundsShort
from zerocontact.payroll.domain.tax import withhold_labour_remuneration
from zerocontact.payroll.handlers.context import Context, claim
from zerocontact.payroll.handlers.employers import acting_employer
from zerocontact.payroll.rail import CreditTransfer, RailStatus
from zerocontact.payroll.repository import GIG_PAYOUTS, ConcurrentUpdate
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ledger import InsufficientFunds
from zerocontact.platform.money import Money


@dataclass(frozen=True)
class GigPayout:
    """A per-task payout to a flexible worker."""

    employer_id: str
    payee_name: str
    card_number: str
    gross: Money
    task_reference: str
    idempotency_key: str


def _card_context(payout_id: str) -> str:
    return f"payroll.gig.card:{payout_id}"


async def pay_gig(ctx: Context, cmd: GigPayout, *, principal: Principal) -> aggregates.GigPayout:
    """Hold the gross, pay the net through the rail, book the withheld tax; once per key."""
    await acting_employer(ctx, cmd.employer_id, principal)
    try:
        card = parse_card(cmd.card_number)
    except InvalidCard as exc:
        raise BatchRefused(str(exc), field="card_number") from None
    payload = {
        "e": cmd.employer_id,
        "n": cmd.payee_name,
        "c": card.number,
        "g": cmd.gross.minor_units,
        "t": cmd.task_reference,
    }
    payout_id, _ = await claim(ctx, f"gig:{cmd.employer_id}", cmd.idempotency_key, payload)
    if await ctx.repo.gig_payout(payout_id) is None:
        split = withhold_labour_remuneration(cmd.gross)
        await ctx.repo.add_gig_payout(
            aggregates.GigPayout(
                payout_id=payout_id,
                employer_id=cmd.employer_id,
                payee_name=cmd.payee_name,
                card_enc=ctx.cipher.encrypt(card.number, context=_card_context(payout_id)),
                card_masked=card.masked,
                bank=card.bank,
                currency=cmd.gross.currency,
                gross_minor=split.gross.minor_units,
                tax_minor=split.tax.minor_units,
                net_minor=split.net.minor_units,
                task_reference=cmd.task_reference,
                state="PENDING",
                attempts=0,
                created_at=datetime.now(UTC),
            )
        )
    return await drive_gig(ctx, payout_id)


async def _payout(ctx: Context, payout_id: str) -> aggregates.GigPayout:
    found = await ctx.repo.gig_payout(payout_id)
    if found is None:
        raise NotFound(f"payout {payout_id} does not exist")
    return found


async def drive_gig(ctx: Context, payout_id: str) -> aggregates.GigPayout:
    """Move a gig payout to PAID or FAILED; every step is idempotent (recovery re-runs it)."""
    payout = await _payout(ctx, payout_id)
    if payout.final:
        return payout
    employer_id = payout.employer_id
    gross, tax = payout.gross, payout.tax
    try:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:hold",
            accounts.gig_hold_legs(employer_id, gross),
            memo=f"gig payout {payout_id}",
        )
    except InsufficientFunds:
        await ctx.repo.set_gig_state(payout_id, "REFUSED")
        raise FundsShort("the wallet does not cover this payout") from None
    card = ctx.cipher.decrypt(payout.card_enc, context=_card_context(payout_id))
    policy = ctx.retry
    attempts = payout.attempts
    while True:
        attempts += 1
        await ctx.repo.set_gig_state(payout_id, "SENT", attempts=attempts)
        (result,) = await ctx.rail.credit_transfers(
            [CreditTransfer(payout_id.replace("-", "")[:35], card, payout.payee_name, gross - tax)]
        )
        if not result.retryable or policy.exhausted(attempts):
            break
        await asyncio.sleep(policy.delay(attempts))
    now = datetime.now(UTC)
    if result.status is RailStatus.ACSC:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:settle",
            accounts.gig_settle(employer_id, gross, tax),
            memo=f"gig payout {payout_id} paid",
        )
        event = events.gig_payout_paid(topic=ctx.topic, payout=payout, at=now)
        decision = {"state": "PAID", "rail_reference": result.reference}
    else:
        await ctx.ledger.post(
            f"payroll:gig:{payout_id}:release",
            accounts.gig_release(employer_id, gross),
            memo=f"gig payout {payout_id} failed",
        )
        code = result.reason_code or "NARR"
        event = events.gig_payout_failed(topic=ctx.topic, payout=payout, reason_code=code, at=now)
        decision = {"state": "FAILED", "reason_code": code}
    latest = await _payout(ctx, payout_id)
    if not latest.final:
        # a concurrent driver decides the same: the rail answers both alike
        with contextlib.suppress(ConcurrentUpdate):
            await ctx.repo.decide_gig(
                latest,
                state=decision["state"],
                rail_reference=decision.get("rail_reference"),
                reason_code=decision.get("reason_code"),
                decided_at=now,
                events=[event],
            )
        ctx.relay.nudge(GIG_PAYOUTS, payout_id)
    return await _payout(ctx, payout_id)
