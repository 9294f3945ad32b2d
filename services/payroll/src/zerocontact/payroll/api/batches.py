"""Payroll batches: submission (JSON, CSV, pain.001), state, items, approval, ISO 20022 exports."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from zerocontact.payroll import handlers, iso20022
from zerocontact.payroll.api.deps import (
    Caller,
    Ctx,
    IdempotencyKey,
    MalformedInput,
    PartyId,
    SteppedUp,
)
from zerocontact.payroll.api.views import BatchRequest, BatchView, batch_view
from zerocontact.payroll.domain.aggregates import Batch
from zerocontact.payroll.domain.batches import DEDUCTION_KINDS, MalformedCsv, RawItem, parse_csv
from zerocontact.platform.auth import Principal
from zerocontact.platform.errors import NotFound

router = APIRouter(prefix="/v1", tags=["payroll"])


async def _submit(
    ctx: handlers.Context,
    employer_id: str,
    key: str,
    who: Principal,
    *,
    items: list[RawItem],
    count: int | None,
    total: Decimal | None,
    scheduled_for: datetime | None,
    source: str,
) -> BatchView:
    batch = await handlers.submit_batch(
        ctx,
        handlers.SubmitBatch(employer_id, items, count, total, scheduled_for, key, source),
        principal=who,
    )
    return batch_view(batch, await handlers.item_counts(ctx, batch))


@router.post("/employers/{employer_id}/batches", status_code=201)
async def submit_json(
    employer_id: PartyId, body: BatchRequest, key: IdempotencyKey, who: Caller, ctx: Ctx
) -> BatchView:
    """Submit a batch as JSON; refused with a per-item report (422) if anything is wrong."""
    items = [
        RawItem(
            payee_name=i.payee_name,
            card_number=i.card_number,
            amount=str(i.amount),
            end_to_end_id=i.end_to_end_id,
            customer_id=i.customer_id,
            gross="" if i.gross is None else str(i.gross),
            deductions={
                k: "" if getattr(i.deductions, k) is None else str(getattr(i.deductions, k))
                for k in DEDUCTION_KINDS
            },
        )
        for i in body.items
    ]
    return await _submit(
        ctx,
        employer_id,
        key,
        who,
        items=items,
        count=body.item_count,
        total=body.control_sum,
        scheduled_for=body.scheduled_for,
        source="json",
    )


@router.post(
    "/employers/{employer_id}/batches/csv",
    status_code=201,
    openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {"type": "string"}}}}},
)
async def submit_csv(
    employer_id: PartyId,
    key: IdempotencyKey,
    who: Caller,
    ctx: Ctx,
    request: Request,
    item_count: Annotated[int, Query(ge=0, le=100_000)],
    control_sum: Annotated[Decimal, Query(ge=0, max_digits=20)],
    scheduled_for: Annotated[datetime | None, Query()] = None,
) -> BatchView:
    """Submit a CSV batch (header: payee_name,card_number,amount[,end_to_end_id,...])."""
    raw = await request.body()
    try:
        items = parse_csv(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise MalformedInput("the CSV is not UTF-8", field="body") from None
    except MalformedCsv as exc:
        raise MalformedInput(f"malformed CSV: {exc}", field="body") from None
    return await _submit(
        ctx,
        employer_id,
        key,
        who,
        items=items,
        count=item_count,
        total=control_sum,
        scheduled_for=scheduled_for,
        source="csv",
    )


@router.post(
    "/employers/{employer_id}/batches/pain001",
    status_code=201,
    openapi_extra={"requestBody": {"content": {"application/xml": {"schema": {"type": "string"}}}}},
)
async def submit_pain001(
    employer_id: PartyId, key: IdempotencyKey, who: Caller, ctx: Ctx, request: Request
) -> BatchView:
    """Import an ISO 20022 pain.001.001.09 (one PmtInf, category purpose SALA)."""
    try:
        message = iso20022.parse_pain001(await request.body())
    except iso20022.MalformedMessage as exc:
        raise MalformedInput(str(exc), field="body") from None
    scheduled = None
    if message.requested_execution and message.requested_execution > datetime.now(UTC).date():
        scheduled = datetime.combine(message.requested_execution, datetime.min.time(), UTC)
    return await _submit(
        ctx,
        employer_id,
        key,
        who,
        items=message.items,
        count=message.declared_count,
        total=message.declared_sum,
        scheduled_for=scheduled,
        source="pain.001",
    )


async def _owned_batch(ctx: handlers.Context, batch_id: str, who: Principal) -> Batch:
    batch = await handlers.batch(ctx, batch_id)
    await handlers.acting_employer(ctx, batch.employer_id, who)
    return batch


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: PartyId, who: Caller, ctx: Ctx) -> BatchView:
    """A batch's state, pain.002 group status and item counts."""
    batch = await _owned_batch(ctx, batch_id, who)
    return batch_view(batch, await handlers.item_counts(ctx, batch))


@router.get("/batches/{batch_id}/report")
async def refusal_report(batch_id: PartyId, who: Caller, ctx: Ctx) -> dict[str, Any]:
    """The per-item validation report of a refused batch."""
    batch = await _owned_batch(ctx, batch_id, who)
    if batch.report is None:
        raise NotFound("the batch was not refused")
    return dict(batch.report)


@router.get("/batches/{batch_id}/items")
async def list_items(
    batch_id: PartyId,
    who: Caller,
    ctx: Ctx,
    state: Annotated[str | None, Query(pattern="^(PENDING|SENT|PAID|FAILED)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after_seq: Annotated[int, Query(ge=0)] = 0,
) -> list[dict[str, Any]]:
    """Items with masked cards, in order; state from the outcomes (PENDING until decided)."""
    await _owned_batch(ctx, batch_id, who)
    rows = []
    async for line in handlers.item_lines(ctx, batch_id, after_seq=after_seq):
        if state and line.state != state:
            continue
        rows.append(
            {
                "seq": line.seq,
                "end_to_end_id": line.end_to_end_id,
                "payee_name": line.payee_name,
                "card": line.card_masked,
                "bank": line.bank,
                "amount_minor": line.amount_minor,
                "state": line.state,
                "attempts": line.attempts,
                "reason_code": line.reason_code,
            }
        )
        if len(rows) >= limit:
            break
    return rows


@router.post("/batches/{batch_id}/approval")
async def approve(batch_id: PartyId, key: IdempotencyKey, who: SteppedUp, ctx: Ctx) -> BatchView:
    """Approve and reserve the batch; needs AAL2 and a recent authentication (step-up)."""
    await handlers.claim(ctx, f"approve:{batch_id}", key, {"batch": batch_id})
    batch = await handlers.approve_batch(ctx, batch_id=batch_id, principal=who)
    return batch_view(batch, await handlers.item_counts(ctx, batch))


@router.get("/batches/{batch_id}/pain001", response_class=Response)
async def export_pain001(batch_id: PartyId, who: Caller, ctx: Ctx) -> Response:
    """The batch as ISO 20022 pain.001.001.09 (cards masked)."""
    batch = await _owned_batch(ctx, batch_id, who)
    owner = await handlers.employer(ctx, batch.employer_id)
    items = [i async for i in handlers.item_lines(ctx, batch_id)]
    xml = iso20022.export_pain001(batch, items, debtor_name=owner.name or owner.employer_id)
    return Response(xml, media_type="application/xml")


@router.get("/batches/{batch_id}/status-report", response_class=Response)
async def status_report(batch_id: PartyId, who: Caller, ctx: Ctx) -> Response:
    """The batch's ISO 20022 pain.002.001.10 status report."""
    batch = await _owned_batch(ctx, batch_id, who)
    items = [i async for i in handlers.item_lines(ctx, batch_id)]
    view = batch_view(batch, await handlers.item_counts(ctx, batch))
    xml = iso20022.status_report(batch, items, group_status=view.status)
    return Response(xml, media_type="application/xml")
