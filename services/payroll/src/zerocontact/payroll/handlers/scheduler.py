"""The scheduler's tick and start-up recovery: work that no request drives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from zerocontact.payroll.domain.batches import BatchState
from zerocontact.payroll.handlers.context import Context
from zerocontact.payroll.handlers.payouts import drive_gig
from zerocontact.payroll.handlers.treasury import fund


async def scheduler_tick(ctx: Context, *, now: datetime | None = None) -> list[str]:
    """Redeem ahead of scheduled payrolls within the lead time; start the ones due.

    Batches left EXECUTING are resumed too: a run fails when an engine is out (a publish or a
    write raises) and nobody else would pick it up before the next restart. ``start`` is a
    no-op for a batch this process is still running.
    """
    moment = now or datetime.now(UTC)
    started = []
    for batch in await ctx.repo.batches_in_state(BatchState.SUBMITTED):
        when = batch.scheduled_for
        if when is not None and when <= moment + ctx.redeem_lead_time:
            await fund(
                ctx,
                employer_id=batch.employer_id,
                need=batch.control_sum,
                purpose=f"batch:{batch.batch_id}",
            )
    for batch in await ctx.repo.batches_in_state(BatchState.APPROVED):
        when = batch.scheduled_for
        if when is None or when <= moment:
            ctx.runner.start(batch.batch_id)
            started.append(batch.batch_id)
    for batch_id in await ctx.repo.batch_ids_in_state(BatchState.EXECUTING):
        if not ctx.runner.running(batch_id):
            ctx.runner.start(batch_id)
            started.append(batch_id)
    return started


async def recover(ctx: Context) -> dict[str, list[str]]:
    """Start-up recovery: finish ledger postings, resume batches and gig payouts in flight."""
    postings = await ctx.ledger.recover(min_age=timedelta(0))
    batches = await ctx.repo.batch_ids_in_state(BatchState.EXECUTING)
    for batch_id in batches:
        ctx.runner.start(batch_id)
    gigs = await ctx.repo.open_gig_payout_ids()
    for payout_id in gigs:
        await drive_gig(ctx, payout_id)
    return {"postings": postings, "batches": batches, "gig_payouts": gigs}
