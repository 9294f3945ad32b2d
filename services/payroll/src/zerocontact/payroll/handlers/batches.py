"""Payroll batches: submission (validated, or refused with a per-item report) and approval."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from zerocontact.payroll import events
from zerocontact.payroll.batch_runner import card_context, chunk_count
from zerocontact.payroll.domain import accounts
from zerocontact.payroll.domain.aggregates import Batch, BatchItem
from zerocontact.payroll.domain.batches import (
    BatchState,
    ItemProblem,
    RawItem,
    ValidationReport,
    validate_batch,
)
from zerocontact.payroll.domain.errors import (
    BatchRefused,
    FundsShort,
    InvalidState,
    MakerCheckerRequired,
)
from zerocontact.payroll.handlers.context import Context, claim, fingerprint
from zerocontact.payroll.handlers.employers import acting_employer
from zerocontact.payroll.handlers.treasury import fund
from zerocontact.payroll.repository import BATCHES, ConcurrentUpdate
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import NotFound
from zerocontact.platform.ledger import InsufficientFunds, Side
from zerocontact.platform.telemetry import current_traceparent


@dataclass(frozen=True)
class SubmitBatch:
    """A batch as submitted (JSON, CSV or pain.001)."""

    employer_id: str
    items: Sequence[RawItem]
    declared_count: int | None
    declared_sum: Decimal | None
    scheduled_for: datetime | None
    idempotency_key: str
    source: str  # "json", "csv" or "pain.001"


def refusal_body(report: ValidationReport, batch_id: str) -> dict[str, Any]:
    """The per-item report of a refused batch (first 1,000 problems)."""
    return {
        "batch_id": batch_id,
        "batch_problems": report.batch_problems,
        "invalid_items": len({p.seq for p in report.item_problems}),
        "item_count": report.item_count,
        "items": [
            {"seq": p.seq, "field": p.field, "code": p.code, "message": p.message}
            for p in report.item_problems[:1000]
        ],
    }


async def submit_batch(ctx: Context, cmd: SubmitBatch, *, principal: Principal) -> Batch:
    """Validate a batch and store it for approval, or refuse it with a per-item report."""
    await acting_employer(ctx, cmd.employer_id, principal)
    payload = {
        "employer": cmd.employer_id,
        "count": cmd.declared_count,
        "sum": cmd.declared_sum,
        "scheduled_for": cmd.scheduled_for,
        "items": fingerprint(
            [
                (
                    i.end_to_end_id,
                    i.payee_name,
                    i.card_number,
                    i.amount,
                    i.customer_id,
                    i.gross,
                    sorted(i.deductions.items()),
                )
                for i in cmd.items
            ]
        ),
    }
    batch_id, _ = await claim(ctx, f"batch:{cmd.employer_id}", cmd.idempotency_key, payload)
    existing = await ctx.repo.batch(batch_id)
    if existing is not None:
        if existing.state == BatchState.REFUSED:
            raise BatchRefused("the batch failed validation", **(existing.report or {}))
        return existing
    report = validate_batch(
        batch_id,
        cmd.items,
        declared_count=cmd.declared_count,
        declared_sum=cmd.declared_sum,
        limits=ctx.limits,
        currency=ctx.currency,
    )
    if report.ok:
        report = await _without_reused_ids(ctx, cmd.employer_id, batch_id, report)
    now = datetime.now(UTC)
    submitted = Batch(
        batch_id=batch_id,
        employer_id=cmd.employer_id,
        currency=ctx.currency,
        item_count=report.item_count,
        control_sum_minor=report.control_sum.minor_units,
        submitted_by=principal.subject,
        submitted_at=now,
        source=cmd.source,
        scheduled_for=cmd.scheduled_for,
        state=BatchState.SUBMITTED,
    )
    if not report.ok:
        body = refusal_body(report, batch_id)
        event = events.batch_refused(
            topic=ctx.topic,
            batch_id=batch_id,
            employer_id=cmd.employer_id,
            invalid_items=body["invalid_items"],
            reasons=report.batch_problems,
            at=now,
        )
        refused = replace(submitted, state=BatchState.REFUSED, report=body)
        if await ctx.repo.add_batch(refused, [event]):
            ctx.relay.nudge(BATCHES, batch_id)
        raise BatchRefused("the batch failed validation", **body)
    context = card_context(batch_id)
    items = [
        BatchItem(
            item_id=f"{batch_id}:{i.seq:06d}",
            batch_id=batch_id,
            seq=i.seq,
            chunk=(i.seq - 1) // ctx.chunk_size,
            end_to_end_id=i.end_to_end_id,
            payee_name=i.payee_name,
            card_enc=ctx.cipher.encrypt(i.card.number, context=context),
            card_masked=i.card.masked,
            bank=i.card.bank,
            amount_minor=i.amount.minor_units,
            customer_id=i.customer_id,
            gross_minor=i.payslip.gross.minor_units,
            deductions_minor={k: v.minor_units for k, v in i.payslip.deductions.items()},
        )
        for i in report.instructions
    ]
    # items first: a crash before the batch document leaves orphans nobody pays
    await ctx.repo.add_items(batch_id, items)
    await ctx.ledger.open_account(
        accounts.batch_reserve(batch_id), currency=ctx.currency, normal_balance=Side.CREDIT
    )
    event = events.batch_submitted(
        topic=ctx.topic,
        batch_id=batch_id,
        employer_id=cmd.employer_id,
        item_count=report.item_count,
        control_sum=report.control_sum,
        submitted_by=principal.subject,
        scheduled_for=cmd.scheduled_for,
        at=now,
    )
    chunks = chunk_count(len(report.instructions), ctx.chunk_size)
    # The batch keeps the submission's trace context: the runner pays it later (after the
    # approval, or when scheduled) and its payments continue that trace.
    stored = replace(submitted, chunks=chunks)
    if await ctx.repo.add_batch(stored, [event], traceparent=current_traceparent()):
        ctx.relay.nudge(BATCHES, batch_id)
    return await batch(ctx, batch_id)


async def _without_reused_ids(
    ctx: Context, employer_id: str, batch_id: str, report: ValidationReport
) -> ValidationReport:
    """Refuse the items whose EndToEndId an earlier batch of the employer used."""
    reused = set(
        await ctx.repo.claim_end_to_end_ids(
            employer_id, batch_id, [i.end_to_end_id for i in report.instructions]
        )
    )
    if not reused:
        return report
    return replace(
        report,
        instructions=[],
        item_problems=[
            ItemProblem(
                i.seq,
                "end_to_end_id",
                "end_to_end_id_reused",
                "this EndToEndId was submitted in an earlier batch",
            )
            for i in report.instructions
            if i.end_to_end_id in reused
        ],
    )


async def batch(ctx: Context, batch_id: str) -> Batch:
    """The batch, or 404."""
    found = await ctx.repo.batch(batch_id)
    if found is None:
        raise NotFound(f"batch {batch_id} does not exist")
    return found


async def approve_batch(ctx: Context, *, batch_id: str, principal: Principal) -> Batch:
    """Approve (the caller passed step-up: AAL2, recent) and reserve the whole batch.

    Due now: execution starts. Scheduled: the scheduler redeems from the money-market holding
    ahead of time if needed and starts it when due.
    """
    current = await batch(ctx, batch_id)
    owner = await acting_employer(ctx, current.employer_id, principal)
    if current.state != BatchState.SUBMITTED:
        if current.state in (BatchState.APPROVED, BatchState.EXECUTING, BatchState.COMPLETED):
            return current  # approving twice is a retry
        raise InvalidState(f"a {current.state} batch cannot be approved")
    if owner.maker_checker and current.submitted_by == principal.subject:
        raise MakerCheckerRequired("another person must approve this batch")
    total = current.control_sum
    employer_id = current.employer_id
    await fund(ctx, employer_id=employer_id, need=total, purpose=f"batch:{batch_id}")
    try:
        await ctx.ledger.post(
            f"payroll:reserve:{batch_id}",
            accounts.reserve(employer_id, batch_id, total),
            memo=f"reserve for batch {batch_id}",
        )
    except InsufficientFunds:
        raise FundsShort("the wallet does not cover this batch") from None
    now = datetime.now(UTC)
    event = events.batch_approved(
        topic=ctx.topic,
        batch_id=batch_id,
        employer_id=employer_id,
        approved_by=principal.subject,
        assurance_level=principal.aal.lower(),
        reserved=total,
        at=now,
    )
    try:
        await ctx.repo.approve_batch(
            current,
            approved_by=principal.subject,
            approved_aal=principal.aal,
            approved_at=now,
            events=[event],
        )
    except ConcurrentUpdate:
        return await batch(ctx, batch_id)  # a concurrent approval won; the reserve is shared
    ctx.relay.nudge(BATCHES, batch_id)
    if current.scheduled_for is None or current.scheduled_for <= now:
        ctx.runner.start(batch_id)
    return await batch(ctx, batch_id)
